//! `netbootd`: the edge netboot daemon.
//!
//! ```text
//! netbootd --config FILE                     run the daemon (env NETBOOTD_CONFIG)
//! netbootd enroll --config FILE --control HOST:PORT --token TOKEN
//!                                            enrol with the control plane (once)
//! netbootd leases --config FILE [--json]     list the leases in the store (works while it runs)
//! netbootd check-config --config FILE        validate the file and print a summary
//! ```
//!
//! The daemon runs what the file configures: DHCP (`[[interface]]`/`[[subnet]]`), TFTP
//! (`[tftp]`), HTTP boot (`[http]`) and `/metrics`; a file with only `[tftp]` is a TFTP-only
//! edge. `NETBOOTD_TFTP_DRIVER` (`auto`, `uring`, `tokio`) overrides `[tftp] driver`.
//!
//! With `[control]` the daemon also runs the uplink to the control plane (it must be enrolled
//! first): it serves the machines, boot profiles and subnets of the control plane's snapshot
//! (kept in the store, so also while the control plane is unreachable and across restarts),
//! and delivers its events (leases, transfers, phone-home, service errors).
//!
//! Exit status: 0 on a clean stop (SIGINT/SIGTERM), 2 for a bad command line or configuration
//! (including a `[tftp]`/`[http]` root missing on this machine), 1 for any other failure. The
//! daemon needs only `CAP_NET_RAW` (raw sockets) and `CAP_NET_BIND_SERVICE` (UDP ports 67 and
//! 69, and an HTTP port below 1024).

use std::io::{self, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ims_netboot::config::{Config, LogFormat, TFTP_DRIVER_ENV, TftpConfig, TftpDriver};
use ims_netboot::dhcp::{Server, UnixTime};
use ims_netboot::http::{self, HttpError, HttpState};
use ims_netboot::io::dhcp_driver::{DhcpDriver, Sockets};
use ims_netboot::io::privileges;
use ims_netboot::io::tftp::{self, TftpOptions, TftpService};
use ims_netboot::io::uplink::identity::{self, Identity};
use ims_netboot::io::uplink::{Uplink, UplinkParts, enroll, tls};
use ims_netboot::metrics;
use ims_netboot::readiness::Readiness;
use ims_netboot::store::LeaseStore;
use ims_netboot::store::lmdb::LmdbStore;
use ims_netboot::uplink::{JoinToken, ServiceHealth, effective_dhcp};
use ims_proto::{SERVICE_DHCP, SERVICE_HTTP, SERVICE_TFTP, ServiceState};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

mod inspect;

use inspect::{check_config, list_discovered, list_events, list_leases, rfc3339};

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
    /// List the edge's event log (phone-home, iPXE scripts, TFTP/HTTP transfers), oldest first.
    Events {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only events with a sequence number above this.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Validate the configuration file and print a summary.
    CheckConfig,
    /// Enrol this edge with the control plane: get a certificate with a one-time join token
    /// and store it in <data_dir>/uplink/.
    Enroll {
        /// The control plane's QUIC address (`ims-control serve --quic-listen`).
        #[arg(long, value_name = "HOST:PORT")]
        control: String,
        /// The join token printed by `ims-control join-token --site NAME`.
        #[arg(long, env = "NETBOOTD_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Enrol again even though an identity exists (it is replaced).
        #[arg(long)]
        force: bool,
    },
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
    tls::install_crypto_provider();
    if let Some(Cmd::Enroll {
        control,
        token,
        force,
    }) = &cli.command
    {
        return run_enroll(path, &config, control, token, *force);
    }
    let identity = match (&config.control, daemon) {
        (Some(_), true) => match identity::load(&config.data_dir) {
            Ok(identity) => Some(identity),
            Err(e) => {
                eprintln!("netbootd: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    if daemon || matches!(cli.command, Some(Cmd::CheckConfig)) {
        // Parsing checks the text; the roots must also exist on the machine that runs it.
        if let Err(e) = config.check_filesystem(&path.display().to_string()) {
            eprintln!("netbootd: {e}");
            return ExitCode::from(2);
        }
        if let Some(t) = &config.tftp {
            if let Err(e) = tftp_driver_requested(t) {
                eprintln!("netbootd: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let result = match cli.command {
        None => run_daemon(config, identity),
        Some(Cmd::Leases { json }) => list_leases(&config, json),
        Some(Cmd::Discovered { json }) => list_discovered(&config, json),
        Some(Cmd::Events { json, after }) => list_events(&config, json, after),
        Some(Cmd::CheckConfig) => check_config(path, &config),
        Some(Cmd::Enroll { .. }) => Ok(()),
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

/// `netbootd enroll`: exit status 2 for a bad command line, 1 when enrolment fails.
fn run_enroll(path: &Path, config: &Config, control: &str, token: &str, force: bool) -> ExitCode {
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("netbootd enroll: {e}");
        ExitCode::from(2)
    };
    let endpoint = match ims_netboot::config::parse_endpoint(control) {
        Ok(endpoint) => endpoint,
        Err(e) => return usage(&format!("--control {e}")),
    };
    let token = match JoinToken::parse(token) {
        Ok(token) => token,
        Err(e) => return usage(&e),
    };
    if identity::is_enrolled(&config.data_dir) && !force {
        let who = identity::load(&config.data_dir)
            .map(|i| format!(" as {} (site {})", i.info.worker_id, i.info.site))
            .unwrap_or_default();
        return usage(&format!(
            "this edge is already enrolled{who} ({}): pass --force to enrol again and replace \
             its identity",
            identity::uplink_dir(&config.data_dir).display()
        ));
    }
    let server_name = config
        .control
        .as_ref()
        .map_or(ims_netboot::config::DEFAULT_CONTROL_SERVER_NAME, |c| {
            c.server_name.as_str()
        })
        .to_owned();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("netbootd enroll: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hostname = ims_netboot::io::uplink::host::hostname();
    let enrolled_at = rfc3339(unix_now());
    let result = runtime.block_on(enroll::enroll(
        &config.data_dir,
        &endpoint,
        &server_name,
        &token,
        &hostname,
        enrolled_at,
    ));
    match result {
        Ok(enrolled) => {
            let mut out = io::stdout().lock();
            let _ = writeln!(
                out,
                "enrolled as worker {} (site {})\nidentity written to {}\n\nput this in {} \
                 and start netbootd:\n\n[control]\nendpoint = \"{}\"",
                enrolled.worker_id,
                enrolled.site,
                enrolled.dir.display(),
                path.display(),
                enrolled.endpoint
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netbootd enroll: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Drops root and capabilities (see `io::privileges`) and logs what was kept. Runs on the main
/// thread, inside `daemon`, after the last socket is open.
fn drop_privileges(user: Option<&str>) -> anyhow::Result<()> {
    let dropped = privileges::drop_privileges(user)?;
    if dropped.still_root {
        tracing::warn!(
            "running as root with every capability: set `user = \"netbootd\"` (an unprivileged \
             user) to drop root once the sockets are open"
        );
    } else {
        let (name, uid, gid) = dropped.user.clone().unwrap_or_else(|| {
            (
                "(unchanged)".to_owned(),
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        });
        info!(
            user = %name,
            uid,
            gid,
            capabilities = %dropped.kept.join(","),
            bounding_set_reduced = dropped.bounding_set_reduced,
            no_new_privs = true,
            "dropped privileges"
        );
    }
    Ok(())
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

/// The readiness entry for loading the configuration snapshot and the lease store.
const STARTUP: &str = "store";

#[allow(clippy::disallowed_methods)]
fn run_daemon(config: Config, identity: Option<Identity>) -> anyhow::Result<()> {
    let started = Instant::now();
    init_tracing(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("netbootd")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon(config, identity, started))
}

async fn daemon(
    config: Config,
    identity: Option<Identity>,
    started: Instant,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested");
        let _ = signal_tx.send(true);
    });

    let handle = match config.metrics_listen {
        Some(_) => Some(metrics::install()?),
        None => None,
    };
    // `/readyz` answers 200 once each enabled service reports it is serving (see `readiness`).
    let readiness = Readiness::new();
    readiness.starting(
        STARTUP,
        format!("opening the lease store in {}", config.data_dir.display()),
    );
    if let Some(tftp) = &config.tftp {
        readiness.starting(SERVICE_TFTP, format!("binding {}", tftp.listen));
    }
    if let Some(http) = &config.http {
        readiness.starting(SERVICE_HTTP, format!("binding {}", http.listen));
    }
    let mut stopping = stop_rx.clone();
    let stopping_readiness = readiness.clone();
    tokio::spawn(async move {
        let _ = stopping.wait_for(|s| *s).await;
        stopping_readiness.stopping();
    });
    let metrics_task = match (config.metrics_listen, handle) {
        (Some(addr), Some(handle)) => {
            let mut stop = stop_rx.clone();
            let (local, serve) = metrics::bind(addr, handle, readiness.clone(), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
            info!(listen = %local, "serving /metrics, /healthz and /readyz");
            Some(tokio::spawn(serve))
        }
        _ => None,
    };

    let store = LmdbStore::open(&config.data_dir).with_context(|| {
        format!(
            "opening the lease store in {} (data_dir)",
            config.data_dir.display()
        )
    })?;
    let leases = store.load_leases().context("loading leases")?;
    let events = store.event_log().context("opening the event log")?;
    let sync = store.sync_store();
    // With a control plane, serve its last snapshot (machines, boot profiles, subnets); the
    // file's interfaces and settings stay. Standalone, the file alone.
    let snapshot = match &config.control {
        Some(_) => sync
            .load_snapshot()
            .context("loading the control plane's snapshot from the store")?,
        None => None,
    };
    let served = match &snapshot {
        Some(snapshot) => {
            let effective = effective_dhcp(&config.dhcp, snapshot);
            for warning in &effective.warnings {
                tracing::warn!(
                    generation = snapshot.generation,
                    "stored snapshot: {warning}"
                );
            }
            info!(
                generation = snapshot.generation,
                machines = effective.dhcp.machines.len(),
                "serving the stored snapshot of the control plane"
            );
            effective.dhcp
        }
        None => config.dhcp.clone(),
    };
    let dhcp = &served;
    let dhcp_enabled = !dhcp.interfaces.is_empty() || !dhcp.subnets.is_empty();
    let health = ServiceHealth::new();
    let state = |on: bool| {
        if on {
            ServiceState::Running
        } else {
            ServiceState::Disabled
        }
    };
    health.set_state(SERVICE_DHCP, state(dhcp_enabled));
    health.set_state(SERVICE_TFTP, state(config.tftp.is_some()));
    health.set_state(SERVICE_HTTP, state(config.http.is_some()));
    if dhcp_enabled {
        let names: Vec<&str> = dhcp.interfaces.iter().map(|i| i.name.as_str()).collect();
        let doing = if names.is_empty() {
            "opening the relay socket on UDP port 67".to_owned()
        } else {
            format!("opening raw sockets on {}", names.join(", "))
        };
        readiness.starting(SERVICE_DHCP, doing);
    }
    readiness.ready(STARTUP);
    let summary = Summary {
        interfaces: dhcp.interfaces.len(),
        subnets: dhcp.subnets.len(),
        machines: dhcp.machines.len(),
        leases: leases.len(),
        dhcp: dhcp_enabled,
        tftp: config.tftp.is_some(),
        http: config.http.is_some(),
    };

    // TFTP and HTTP run beside DHCP; each ends when `stop` turns true. Both bind before either
    // starts, so a busy port fails the start with nothing left running.
    let http_listener = match &config.http {
        Some(http_config) => Some(
            tokio::net::TcpListener::bind(http_config.listen)
                .await
                .map_err(|source| HttpError::Bind {
                    addr: http_config.listen,
                    source,
                })?,
        ),
        None => None,
    };
    let mut services: JoinSet<anyhow::Result<()>> = JoinSet::new();
    if let Some(tftp) = &config.tftp {
        let service = start_tftp(tftp, events.clone(), stop_rx.clone())?;
        // Bound, and the driver thread runs: datagrams from now on are served.
        readiness.ready(SERVICE_TFTP);
        services.spawn(async move { service.stopped().await.context("TFTP server") });
    }
    let mut http_state = None;
    if let (Some(http_config), Some(listener)) = (&config.http, http_listener) {
        let state = HttpState::new(http_config, dhcp, Some(events.clone()));
        http_state = Some(state.clone());
        info!(
            listen = %listener.local_addr().unwrap_or(http_config.listen),
            public_url = %http_config.public_url,
            root = %http_config.root.display(),
            max_downloads = http_config.max_downloads,
            "HTTP boot server started"
        );
        let stop = stop_rx.clone();
        let readiness = readiness.clone();
        services.spawn(async move {
            // The listener is bound and listening; connections are accepted from here on.
            readiness.ready(SERVICE_HTTP);
            http::serve(state, listener, stop)
                .await
                .context("HTTP boot server")
        });
    }

    // The uplink: DHCP configuration updates go through a watch channel to the driver.
    let (dhcp_updates, dhcp_updates_rx) = watch::channel(Arc::new(dhcp.clone()));
    let uplink_task = match (&config.control, identity) {
        (Some(control), Some(identity)) => {
            let uplink = Uplink::new(UplinkParts {
                control: control.clone(),
                identity,
                base: config.dhcp.clone(),
                sync,
                events: events.clone(),
                dhcp_updates: dhcp_enabled.then_some(dhcp_updates),
                http: http_state,
                health: health.clone(),
                snapshot,
                started,
            })
            .context("preparing the uplink to the control plane")?;
            Some(tokio::spawn(uplink.run(stop_rx.clone())))
        }
        _ => None,
    };
    let with_control = uplink_task.is_some();
    drop(events);

    let dhcp_run = async {
        if dhcp_enabled {
            let mut server = Server::new(dhcp.clone(), leases, unix_now());
            server.set_rate_limit(config.dhcp_driver.rate_limit_per_mac);
            // With a control plane, relayed subnets may arrive in a snapshot: listen for relays.
            let relay_addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67);
            let sockets =
                Sockets::open(dhcp, relay_addr, with_control).context("opening DHCP sockets")?;
            // Every socket is open now (metrics, HTTP, TFTP, DHCP): drop what is not needed.
            drop_privileges(config.user.as_deref())?;
            let mut driver = DhcpDriver::new(server, store, sockets, config.dhcp_driver.max_batch)?
                .with_readiness(readiness.clone());
            if with_control {
                driver = driver
                    .with_config_updates(dhcp_updates_rx.clone())
                    .with_lease_events()
                    .with_health(health.clone());
            }
            log_started(&summary, started);
            driver
                .run(stop_rx.clone())
                .await
                .map_err(anyhow::Error::from)
        } else {
            drop(store);
            drop_privileges(config.user.as_deref())?;
            info!("no [[interface]] and no [[subnet]] configured: DHCP is not running");
            log_started(&summary, started);
            let mut stop = stop_rx.clone();
            let _ = stop.wait_for(|s| *s).await;
            Ok(())
        }
    };
    tokio::pin!(dhcp_run);

    // Until DHCP ends (on the signal), watch the other services: one failing stops them all.
    let mut failure: Option<anyhow::Error> = None;
    let dhcp_result = loop {
        tokio::select! {
            result = &mut dhcp_run => break result,
            Some(joined) = services.join_next(), if !services.is_empty() => {
                if let Err(e) = service_result(joined, &stop_rx) {
                    error!("{e:#}; stopping netbootd");
                    failure.get_or_insert(e);
                    let _ = stop_tx.send(true);
                }
            }
        }
    };
    if dhcp_result.is_err() {
        let _ = stop_tx.send(true);
    }
    while let Some(joined) = services.join_next().await {
        if let Err(e) = service_result(joined, &stop_rx) {
            error!("{e:#}");
            failure.get_or_insert(e);
        }
    }

    if let Some(task) = uplink_task {
        let _ = stop_tx.send(true);
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            error!("the uplink did not stop within 5 s");
        }
    }
    if let Some(task) = metrics_task {
        // The listener stops on the same signal; an error there is worth reporting, not fatal.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => error!("{e}"),
            Ok(Err(e)) => error!("metrics listener task: {e}"),
            Err(_) => error!("metrics listener did not stop within 5 s"),
        }
    }
    let result = match (dhcp_result, failure) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(()),
    };
    if result.is_ok() {
        info!("netbootd stopped");
    }
    result
}

/// Start TFTP with the driver the file (or `NETBOOTD_TFTP_DRIVER`) asks for; it logs the
/// driver and the effective `max_blksize`.
fn start_tftp(
    config: &TftpConfig,
    events: ims_netboot::store::events::EventLog,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<TftpService> {
    let requested = tftp_driver_requested(config)?;
    let options = TftpOptions {
        cache_capacity: None,
        events: Some(events),
    };
    Ok(TftpService::start(config, requested, options, stop)?)
}

/// `[tftp] driver`, or `NETBOOTD_TFTP_DRIVER` when set.
fn tftp_driver_requested(config: &TftpConfig) -> Result<TftpDriver, tftp::TftpError> {
    let env = std::env::var(TFTP_DRIVER_ENV).ok();
    tftp::requested_driver(config.driver, env.as_deref())
}

/// A finished service task: an error, or a stop nobody asked for, is a failure.
fn service_result(
    joined: Result<anyhow::Result<()>, tokio::task::JoinError>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match joined {
        Ok(Ok(())) if *stop.borrow() => Ok(()),
        Ok(Ok(())) => Err(anyhow::anyhow!("a service stopped unexpectedly")),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("a service task failed: {e}")),
    }
}

/// What the startup line reports.
#[derive(Debug)]
struct Summary {
    interfaces: usize,
    subnets: usize,
    machines: usize,
    leases: usize,
    dhcp: bool,
    tftp: bool,
    http: bool,
}

fn log_started(summary: &Summary, started: Instant) {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        interfaces = summary.interfaces,
        subnets = summary.subnets,
        machines = summary.machines,
        leases = summary.leases,
        dhcp = summary.dhcp,
        tftp = summary.tftp,
        http = summary.http,
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
