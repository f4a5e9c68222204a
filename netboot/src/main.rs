//! `netbootd`: the edge netboot daemon.
//!
//! ```text
//! netbootd --config FILE                     run the daemon (env NETBOOTD_CONFIG)
//! netbootd leases --config FILE [--json]     list the leases in the store (works while it runs)
//! netbootd check-config --config FILE        validate the file and print a summary
//! ```
//!
//! Exit status: 0 on a clean stop (SIGINT/SIGTERM), 2 for a bad command line or configuration,
//! 1 for any other failure. The daemon needs only `CAP_NET_RAW` (raw sockets) and
//! `CAP_NET_BIND_SERVICE` (UDP port 67 for relays).

use std::io::{self, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ims_netboot::config::{Config, LogFormat};
use ims_netboot::dhcp::{Lease, LeaseState, Server, UnixTime};
use ims_netboot::io::dhcp_driver::{DhcpDriver, Sockets};
use ims_netboot::metrics;
use ims_netboot::store::LeaseStore;
use ims_netboot::store::lmdb::LmdbStore;
use tokio::sync::watch;
use tracing::{error, info};

/// The edge netboot daemon: DHCPv4 for registered bare-metal machines.
#[derive(Debug, Parser)]
#[command(name = "netbootd", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, env = "NETBOOTD_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What to do; without a subcommand, run the daemon.
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the leases in the store, sorted by IP (safe while the daemon runs).
    Leases {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the machines seen in discovery mode (`allow_unknown = true`), sorted by MAC.
    Discovered {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration file and print a summary.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config.as_deref() else {
        eprintln!("netbootd: no configuration file: pass --config FILE or set NETBOOTD_CONFIG");
        return ExitCode::from(2);
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("netbootd: {e}");
            return ExitCode::from(2);
        }
    };
    let daemon = cli.command.is_none();
    let result = match cli.command {
        None => run_daemon(config),
        Some(Cmd::Leases { json }) => list_leases(&config, json),
        Some(Cmd::Discovered { json }) => list_discovered(&config, json),
        Some(Cmd::CheckConfig) => check_config(path, &config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if daemon {
                // The daemon logs to stderr already (text or JSON, as configured).
                error!("{e:#}");
            } else {
                eprintln!("netbootd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The wall clock, read once at startup for the core's initial `now`.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[allow(clippy::disallowed_methods)]
fn run_daemon(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    init_tracing(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("netbootd")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon(config, started))
}

async fn daemon(config: Config, started: Instant) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });

    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let handle = metrics::install()?;
            let mut stop = stop_rx.clone();
            let (local, serve) = metrics::bind(addr, handle, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
            info!(listen = %local, "serving /metrics and /healthz");
            Some(tokio::spawn(serve))
        }
        None => None,
    };

    let store = LmdbStore::open(&config.data_dir).with_context(|| {
        format!(
            "opening the lease store in {} (data_dir)",
            config.data_dir.display()
        )
    })?;
    let leases = store.load_leases().context("loading leases")?;
    let dhcp = &config.dhcp;
    let dhcp_enabled = !dhcp.interfaces.is_empty() || !dhcp.subnets.is_empty();
    let summary = (
        dhcp.interfaces.len(),
        dhcp.subnets.len(),
        dhcp.machines.len(),
        leases.len(),
    );

    let result = if dhcp_enabled {
        let server = Server::new(config.dhcp.clone(), leases, unix_now());
        let sockets = Sockets::open(dhcp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67))
            .context("opening DHCP sockets")?;
        let driver = DhcpDriver::new(server, store, sockets, config.dhcp_driver.max_batch)?;
        log_started(summary, started, true);
        driver
            .run(stop_rx.clone())
            .await
            .map_err(anyhow::Error::from)
    } else {
        drop(store);
        info!("no [[interface]] and no [[subnet]] configured: DHCP is not running");
        log_started(summary, started, false);
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
        Ok(())
    };

    if let Some(task) = metrics_task {
        // The listener stops on the same signal; an error there is worth reporting, not fatal.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error!("{e}"),
            Ok(Err(e)) => error!("metrics listener task: {e}"),
            Err(_) => error!("metrics listener did not stop within 5 s"),
        }
    }
    if result.is_ok() {
        info!("netbootd stopped");
    }
    result
}

fn log_started(
    (interfaces, subnets, machines, leases): (usize, usize, usize, usize),
    started: Instant,
    dhcp: bool,
) {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        interfaces,
        subnets,
        machines,
        leases,
        dhcp,
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "netbootd started"
    );
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            error!("cannot listen for SIGTERM ({e}); stop netbootd with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// RFC 3339 UTC, whole seconds.
fn rfc3339(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.0)).to_string()
}

fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Bound => "bound",
        LeaseState::Released => "released",
        LeaseState::Expired => "expired",
        LeaseState::Declined => "declined",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One lease as `leases --json` prints it.
#[derive(Debug, serde::Serialize)]
struct LeaseJson<'a> {
    ip: String,
    mac: String,
    state: &'static str,
    hostname: Option<&'a str>,
    starts: String,
    ends: String,
    boot_file: Option<&'a str>,
    next_server: Option<String>,
    arch: Option<u16>,
    client_id: Option<String>,
    uuid: Option<String>,
}

impl<'a> From<&'a Lease> for LeaseJson<'a> {
    fn from(l: &'a Lease) -> Self {
        Self {
            ip: l.ip.to_string(),
            mac: l.mac.to_string(),
            state: state_name(l.state),
            hostname: l.hostname.as_deref(),
            starts: rfc3339(l.starts),
            ends: rfc3339(l.ends),
            boot_file: l.boot_file.as_deref(),
            next_server: l.next_server.map(|ip| ip.to_string()),
            arch: l.arch,
            client_id: l.client_id.as_deref().map(hex),
            uuid: l.uuid.as_deref().map(hex),
        }
    }
}

fn list_leases(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = LmdbStore::open_read_only(&config.data_dir)?;
    let mut leases = store.load_leases()?;
    leases.sort_by_key(|l| l.ip);
    let mut out = io::stdout().lock();
    if json {
        let views: Vec<LeaseJson<'_>> = leases.iter().map(LeaseJson::from).collect();
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &leases)?;
    }
    out.flush()?;
    Ok(())
}

fn write_table(out: &mut impl Write, leases: &[Lease]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.ip.to_string(),
                l.mac.to_string(),
                state_name(l.state).to_owned(),
                l.hostname.clone().unwrap_or_else(|| "-".into()),
                rfc3339(l.starts),
                rfc3339(l.ends),
                l.boot_file.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "IP",
        "MAC",
        "STATE",
        "HOSTNAME",
        "STARTS",
        "ENDS",
        "BOOT FILE",
    ];
    write_columns(out, &header, &rows)
}

fn list_discovered(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = LmdbStore::open_read_only(&config.data_dir)?;
    let mut machines = store.load_discovered()?;
    machines.sort_by_key(|m| m.mac);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &machines)?;
        writeln!(out)?;
    } else {
        let rows: Vec<Vec<String>> = machines
            .iter()
            .map(|m| {
                vec![
                    m.mac.to_string(),
                    m.ip.to_string(),
                    m.arch.map_or_else(|| "-".into(), |a| a.to_string()),
                    m.vendor_class.clone().unwrap_or_else(|| "-".into()),
                    m.hostname.clone().unwrap_or_else(|| "-".into()),
                    rfc3339(m.first_seen),
                    rfc3339(m.last_seen),
                ]
            })
            .collect();
        let header = [
            "MAC",
            "IP",
            "ARCH",
            "VENDOR CLASS",
            "HOSTNAME",
            "FIRST SEEN",
            "LAST SEEN",
        ];
        write_columns(&mut out, &header, &rows)?;
    }
    out.flush()?;
    Ok(())
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn write_columns(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

fn check_config(path: &Path, config: &Config) -> anyhow::Result<()> {
    let dhcp = &config.dhcp;
    let mut out = io::stdout().lock();
    writeln!(out, "{}: OK", path.display())?;
    writeln!(out, "data_dir: {}", config.data_dir.display())?;
    match config.metrics_listen {
        Some(addr) => writeln!(out, "metrics: http://{addr}/metrics")?,
        None => writeln!(out, "metrics: disabled")?,
    }
    writeln!(out, "interfaces: {}", dhcp.interfaces.len())?;
    for i in &dhcp.interfaces {
        writeln!(out, "  {} ({})", i.name, i.address)?;
    }
    writeln!(out, "subnets: {}", dhcp.subnets.len())?;
    for s in &dhcp.subnets {
        let range = s
            .range
            .map(|(a, b)| format!("range {a}-{b}"))
            .unwrap_or_else(|| "no dynamic range".into());
        let mode = if s.allow_unknown {
            ", discovery mode"
        } else {
            ""
        };
        writeln!(
            out,
            "  {} ({range}, lease {} s{mode})",
            s.cidr, s.lease_time
        )?;
    }
    writeln!(out, "boot profiles: {}", dhcp.boot_profiles.len())?;
    writeln!(out, "machines: {}", dhcp.machines.len())?;
    if dhcp.interfaces.is_empty() && dhcp.subnets.is_empty() {
        writeln!(
            out,
            "note: no [[interface]] and no [[subnet]]: DHCP will not run"
        )?;
    }
    out.flush()?;
    Ok(())
}
