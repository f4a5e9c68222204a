//! `api-bench`: REST load on a running `ims-control` (see `bench/README.md`, "Control plane").

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use ims_bench::api_bench::{Options, run};

/// Time machine creation and large listings through ims-control's REST API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Admin user.
    #[arg(long, default_value = "admin")]
    username: String,
    /// Admin password.
    #[arg(long, env = "IMS_BENCH_PASSWORD", hide_env_values = true)]
    password: String,
    /// Machines in the cluster at the end (the size of the full listing).
    #[arg(long, default_value_t = 10_000)]
    machines: usize,
    /// Machines created in the timed "create" phase.
    #[arg(long, default_value_t = 1_000)]
    create: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Full-listing requests per listing phase.
    #[arg(long, default_value_t = 20)]
    list_repeats: usize,
    /// 100-machine page requests.
    #[arg(long, default_value_t = 1_000)]
    page_requests: usize,
    /// Keep the benchmark's cluster and machines.
    #[arg(long)]
    keep: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let phases = run(&Options {
        addr: a.addr,
        username: a.username,
        password: a.password,
        machines: a.machines,
        create: a.create,
        concurrency: a.concurrency,
        list_repeats: a.list_repeats,
        page_requests: a.page_requests,
        cleanup: !a.keep,
    })
    .context("api-bench")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&phases)?)?;
    } else {
        for p in &phases {
            writeln!(out, "{p}")?;
        }
    }
    let failed = phases.iter().any(|p| p.failures > 0);
    if failed {
        std::process::exit(3);
    }
    Ok(())
}
