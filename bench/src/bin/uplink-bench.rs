//! `uplink-bench`: simulated edges heartbeating against a running `ims-control` (see
//! `bench/README.md`, "Uplink: uplink-bench"; `bench/uplink-bench.sh` runs it end to end).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ims_bench::uplink_bench::{MAX_EDGES, Options, run};
use nix::sys::resource::{UsageWho, getrusage};

/// Enrol N simulated edges with one-time join tokens, keep their uplink sessions
/// heartbeating for a bounded time, and report enrolment times, heartbeat round trips and
/// failures.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The control plane's QUIC address (`ims-control serve --quic-listen`).
    #[arg(long, default_value = "127.0.0.1:7443")]
    control: SocketAddr,
    /// File of join tokens, one per edge (`ims-control join-token --site NAME --count N`;
    /// lines that are not tokens are skipped).
    #[arg(long, value_name = "FILE")]
    tokens: PathBuf,
    /// Edges to simulate [default: one per token].
    #[arg(long)]
    edges: Option<usize>,
    /// Length of the steady window (after every edge's set-up), seconds (1 to 600).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Bound of the set-up phase, seconds (1 to 600).
    #[arg(long, default_value_t = 300)]
    setup_seconds: u64,
    /// Enrolments and uplink set-ups in progress at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Client UDP sockets the edges are spread over.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Host-name prefix of the edges (worker ids are `<site>-<prefix><index>`).
    #[arg(long, default_value = "edge-")]
    hostname_prefix: String,
    /// Seed of the first-heartbeat jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn cpu_seconds() -> anyhow::Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let secs = |t: nix::sys::time::TimeVal| {
        #[allow(clippy::cast_precision_loss)]
        let s = t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s
    };
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.tokens)
        .with_context(|| format!("reading the join tokens from {}", a.tokens.display()))?;
    let mut tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("IMS1."))
        .map(ToOwned::to_owned)
        .collect();
    let edges = a.edges.unwrap_or(tokens.len());
    anyhow::ensure!(
        (1..=MAX_EDGES).contains(&edges),
        "--edges {edges}: give 1 to {MAX_EDGES}"
    );
    anyhow::ensure!(
        tokens.len() >= edges,
        "{} holds {} join tokens but {edges} edges need one each; make more with \
         `ims-control join-token --site NAME --count {edges}`",
        a.tokens.display(),
        tokens.len()
    );
    tokens.truncate(edges);
    let mut o = Options::new(a.control, tokens);
    o.duration = Duration::from_secs(a.seconds);
    o.setup_limit = Duration::from_secs(a.setup_seconds);
    o.concurrency = a.concurrency;
    o.endpoints = a.endpoints;
    o.hostname_prefix = a.hostname_prefix;
    o.seed = a.seed;
    o.validate()?;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let cpu_before = cpu_seconds()?;
    let mut report = runtime.block_on(run(&o)).context("uplink-bench")?;
    report.generator_cpu_s = Some(cpu_seconds()? - cpu_before);
    runtime.shutdown_timeout(Duration::from_secs(2));

    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(out, "{report}")?;
    }
    out.flush()?;
    if report.failed() > 0 || report.connected < report.edges {
        std::process::exit(3);
    }
    Ok(())
}
