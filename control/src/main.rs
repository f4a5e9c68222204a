//! `ims-control`: the control plane's binary.
//!
//! ```text
//! ims-control serve [--listen ADDR] [--tls-cert PEM --tls-key PEM] [--access-ttl 15m]
//!                   [--refresh-ttl 24h] [--log-format human|json]
//!                   [--quic-listen ADDR] [--quic-name NAME]... [--heartbeat-interval 10s]
//!                   [--smo-url URL [--smo-token-file FILE] [--smo-ca PEM]
//!                    [--global-cloud-id UUID] [--ims-endpoint URL]] [--callback-ca PEM]
//!                   [--key-rotation 30days]
//!                                                                      run the server
//! ims-control user add NAME [--role admin|viewer] [--password-stdin]   create a user
//! ims-control user passwd NAME [--password-stdin]                      set a password
//! ims-control user del NAME                                            delete a user
//! ims-control user list                                                list users
//! ims-control join-token --site NAME [--ttl 1h] [--count N]            one-time edge tokens
//! ims-control worker list                                              list edge workers
//! ims-control worker revoke ID                                         revoke an edge worker
//! ims-control client add NAME [--scope SCOPE]... [--description TEXT]  OAuth2 client (O2ims)
//! ims-control client secret NAME                                      new client secret
//! ims-control client del NAME                                         delete a client
//! ims-control client list                                             list clients
//! ims-control rotate-key [--access-ttl 15m] [--refresh-ttl 24h]         new token signing key
//! ```
//!
//! `client add` and `client secret` print the client id and its new secret once (the store
//! keeps only an argon2 hash); FOCOM trades them for a token at `POST /oauth/token`.
//!
//! `serve` also runs the edge uplink (QUIC, UDP `--quic-listen`, default 0.0.0.0:7443) and logs
//! `quic listening on IP:PORT` after the HTTP `listening on` line. `join-token` prints the
//! token as its last line, or with `--count N` N tokens as the last N lines (creating the
//! uplink CA first if `serve` never ran).
//!
//! Every command takes `--config FILE` (`IMS_CONFIG`), `--data-dir DIR` (`IMS_DATA_DIR`) and
//! `--database URL` (`IMS_DATABASE_URL`) to find the store; flags and variables override the
//! file (see `ims_control::config`). Migrations run first. On its first start (no users),
//! `serve` creates `admin` with `IMS_ADMIN_PASSWORD` or prints a generated password once.
//! `user add`/`passwd` take the password from `--password-stdin` (one line), else
//! `IMS_USER_PASSWORD`, else generate and print one.
//!
//! Exit status: 0 on success and on a clean stop (SIGINT/SIGTERM), 2 for a bad command line or
//! configuration, 1 for any other failure.
#![forbid(unsafe_code)]

#[path = "main/clients_cmd.rs"]
mod clients_cmd;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ims_control::api::page::{MAX_PAGE_SIZE, PageRequest};
use ims_control::auth::{password, rotation};
use ims_control::config::{ConfigSources, LogFormat, RawConfig, ServeConfig};
use ims_control::db::{Db, StoreError, format_ts, now_ms};
use ims_control::model::UserRole;
use ims_control::o2ims::{delivery, registration};
use ims_control::server::{self, FirstAdmin};
use ims_control::state::AppState;
use ims_control::store::users::{self, UserChange};
use ims_control::store::workers::{self as worker_store, WorkerFilter};
use ims_control::uplink::{Ca, UplinkServer, registry, tokens};
use tokio::sync::watch;
use tracing::{error, info};

/// The control plane of the edge netboot system: REST API, users, store.
#[derive(Debug, Parser)]
#[command(name = "ims-control", version, about)]
struct Cli {
    /// Configuration file (TOML); flags and environment variables override its keys.
    #[arg(long, env = "IMS_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (holds the SQLite store) [default: /var/lib/ims-control].
    #[arg(long, env = "IMS_DATA_DIR", global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`) [default: SQLite
    /// in the data directory].
    #[arg(
        long,
        env = "IMS_DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Cmd {
    /// Run the control plane.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Make a one-time join token that enrols an edge into a site (printed as the last line).
    JoinToken {
        /// The site (name or id) the edge joins; it must exist.
        #[arg(long, value_name = "NAME")]
        site: String,
        /// How long the token stays valid (1m to 30days).
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        ttl: String,
        /// How many tokens to make (1 to 10000), one per edge: the last N lines.
        #[arg(long, default_value_t = 1, value_name = "N")]
        count: usize,
    },
    /// Manage edge workers.
    #[command(subcommand)]
    Worker(WorkerCmd),
    /// Manage the OAuth2 clients of the O2ims API (client-credentials grant).
    #[command(subcommand)]
    Client(clients_cmd::ClientCmd),
    /// Rotate the token signing key: a new key signs from now on; older keys keep verifying
    /// until every token they signed has expired (the longer token lifetime, plus a minute for
    /// replicas to reload and a minute of clock skew), then they are pruned. Running servers
    /// pick the new key up within a minute, or at once when they see a token signed with it.
    RotateKey {
        /// Access-token lifetime the servers use [default: 15m].
        #[arg(long, env = "IMS_ACCESS_TTL", value_name = "DURATION")]
        access_ttl: Option<String>,
        /// Refresh-token lifetime the servers use [default: 24h].
        #[arg(long, env = "IMS_REFRESH_TTL", value_name = "DURATION")]
        refresh_ttl: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WorkerCmd {
    /// List the workers.
    List,
    /// Revoke a worker and its certificates: its uplink connection is dropped within seconds
    /// and it cannot connect again until it is enrolled anew.
    Revoke {
        /// The worker's id (as `worker list` shows) or worker_id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// HTTP(S) listen address [default: 127.0.0.1:8000].
    #[arg(long, env = "IMS_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, env = "IMS_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "IMS_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Access-token lifetime [default: 15m].
    #[arg(long, env = "IMS_ACCESS_TTL", value_name = "DURATION")]
    access_ttl: Option<String>,
    /// Refresh-token lifetime [default: 24h].
    #[arg(long, env = "IMS_REFRESH_TTL", value_name = "DURATION")]
    refresh_ttl: Option<String>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "IMS_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
    /// QUIC (edge uplink, UDP) listen address [default: 0.0.0.0:7443].
    #[arg(long, env = "IMS_QUIC_LISTEN", value_name = "ADDR")]
    quic_listen: Option<String>,
    /// An extra DNS name or IP address for the QUIC server certificate (repeatable).
    #[arg(
        long = "quic-name",
        env = "IMS_QUIC_NAMES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    quic_names: Vec<String>,
    /// How often edges send a heartbeat [default: 10s].
    #[arg(long, env = "IMS_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    heartbeat_interval: Option<String>,
    /// Register the O-Cloud with the SMO at this http(s) URL at start (retried until
    /// accepted).
    #[arg(long, env = "IMS_SMO_URL", value_name = "URL")]
    smo_url: Option<String>,
    /// A file holding a bearer token for the SMO.
    #[arg(long, env = "IMS_SMO_TOKEN_FILE", value_name = "FILE")]
    smo_token_file: Option<PathBuf>,
    /// PEM CA certificates trusted for an https SMO (besides the system roots).
    #[arg(long, env = "IMS_SMO_CA", value_name = "PEM")]
    smo_ca: Option<PathBuf>,
    /// The global cloud id the SMO assigned (UUID; stored for later starts).
    #[arg(long, env = "IMS_GLOBAL_CLOUD_ID", value_name = "UUID")]
    global_cloud_id: Option<String>,
    /// The public API root sent to the SMO as IMS_EP [default: the stored serviceUri, else
    /// the listen URL].
    #[arg(long, env = "IMS_ENDPOINT", value_name = "URL")]
    ims_endpoint: Option<String>,
    /// PEM CA certificates trusted for https O2ims callbacks (besides the system roots).
    #[arg(long, env = "IMS_CALLBACK_CA", value_name = "PEM")]
    callback_ca: Option<PathBuf>,
    /// Rotate the token signing key automatically when it is this old (at least 1h, such as
    /// 30days); older keys keep verifying until their tokens expire [default: off].
    #[arg(long, env = "IMS_KEY_ROTATION", value_name = "DURATION")]
    key_rotation: Option<String>,
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Create a user.
    Add {
        /// Username (letters, digits and @ . + _ -).
        name: String,
        /// Role: admin (reads and writes) or viewer (reads only).
        #[arg(long, default_value = "viewer", value_name = "ROLE")]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a user's password.
    Passwd {
        /// Username.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user (not the last admin).
    Del {
        /// Username.
        name: String,
    },
    /// List the users.
    List,
}

#[derive(Debug, Args)]
struct PasswordArgs {
    /// Read the password from the first line of standard input (else IMS_USER_PASSWORD, else
    /// a random one is generated and printed).
    #[arg(long)]
    password_stdin: bool,
}

/// A failure with its exit status.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            code: 1,
            error: e.into(),
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Cmd::Serve(_));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            let message = describe(&error);
            if serving && tracing::dispatcher::has_been_set() {
                error!("{message}");
            } else {
                eprintln!("ims-control: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes, each cause only once (many messages embed their cause).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut layer = RawConfig {
        data_dir: cli.data_dir,
        database: cli.database,
        ..RawConfig::default()
    };
    if let Cmd::Serve(args) = &cli.command {
        layer.listen.clone_from(&args.listen);
        layer.tls_cert.clone_from(&args.tls_cert);
        layer.tls_key.clone_from(&args.tls_key);
        layer.access_ttl.clone_from(&args.access_ttl);
        layer.refresh_ttl.clone_from(&args.refresh_ttl);
        layer.log_format.clone_from(&args.log_format);
        layer.quic_listen.clone_from(&args.quic_listen);
        layer.quic_names = (!args.quic_names.is_empty()).then(|| args.quic_names.clone());
        layer
            .heartbeat_interval
            .clone_from(&args.heartbeat_interval);
        layer.smo_url.clone_from(&args.smo_url);
        layer.smo_token_file.clone_from(&args.smo_token_file);
        layer.smo_ca.clone_from(&args.smo_ca);
        layer.global_cloud_id.clone_from(&args.global_cloud_id);
        layer.ims_endpoint.clone_from(&args.ims_endpoint);
        layer.callback_ca.clone_from(&args.callback_ca);
        layer.key_rotation.clone_from(&args.key_rotation);
    }
    if let Cmd::RotateKey {
        access_ttl,
        refresh_ttl,
    } = &cli.command
    {
        layer.access_ttl.clone_from(access_ttl);
        layer.refresh_ttl.clone_from(refresh_ttl);
    }
    let sources = ConfigSources::load(cli.config.as_deref(), layer).map_err(usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ims-control")
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Cmd::Serve(_) => {
            let config = sources.serve().map_err(usage)?;
            init_tracing(config.log_format);
            runtime.block_on(serve(config))
        }
        Cmd::User(cmd) => {
            let location = sources.store().map_err(usage)?;
            runtime.block_on(async {
                let db = server::open_store(&location).await?;
                db.migrate().await.context("migrating the store")?;
                let result = user_command(&db, cmd).await;
                db.close().await;
                result
            })
        }
        Cmd::JoinToken { site, ttl, count } => {
            let ttl = humantime::parse_duration(ttl.trim()).map_err(|e| {
                usage(anyhow::anyhow!(
                    "--ttl: `{ttl}` is not a duration ({e}); write it like 30m, 1h or 2days"
                ))
            })?;
            tokens::validate_ttl(ttl).map_err(|m| usage(anyhow::anyhow!("--ttl: {m}")))?;
            if !(1..=tokens::MAX_COUNT).contains(&count) {
                return Err(usage(anyhow::anyhow!(
                    "--count: {count} tokens asked for: give 1 to {}",
                    tokens::MAX_COUNT
                )));
            }
            let location = sources.store().map_err(usage)?;
            runtime.block_on(async {
                let db = server::open_store(&location).await?;
                db.migrate().await.context("migrating the store")?;
                let result = join_token(&db, &site, ttl, count).await;
                db.close().await;
                result
            })
        }
        Cmd::RotateKey { .. } => {
            let settings = sources.serve().map_err(usage)?.auth;
            let location = sources.store().map_err(usage)?;
            runtime.block_on(async {
                let db = server::open_store(&location).await?;
                db.migrate().await.context("migrating the store")?;
                let grace = rotation::grace(&settings);
                let result = rotation::rotate(&db, now_ms(), grace).await;
                db.close().await;
                let r = result.context("rotating the token signing key")?;
                say(&format!(
                    "new signing key {}; keys verifying: {}; pruned: {}; older keys are pruned {} \
                     after their successor was created",
                    r.current,
                    r.kept.join(", "),
                    if r.pruned.is_empty() {
                        "none".to_owned()
                    } else {
                        r.pruned.join(", ")
                    },
                    humantime::format_duration(grace)
                ))?;
                Ok(())
            })
        }
        Cmd::Worker(cmd) => {
            let location = sources.store().map_err(usage)?;
            runtime.block_on(async {
                let db = server::open_store(&location).await?;
                db.migrate().await.context("migrating the store")?;
                let result = worker_command(&db, cmd).await;
                db.close().await;
                result
            })
        }
        Cmd::Client(cmd) => {
            let location = sources.store().map_err(usage)?;
            runtime.block_on(async {
                let db = server::open_store(&location).await?;
                db.migrate().await.context("migrating the store")?;
                let result = clients_cmd::client_command(&db, cmd).await;
                db.close().await;
                result
            })
        }
    }
}

async fn join_token(
    db: &Db,
    site: &str,
    ttl: std::time::Duration,
    count: usize,
) -> Result<(), Failure> {
    let ca = Ca::load_or_create(db)
        .await
        .context("loading the uplink CA")?;
    let issued = tokens::issue_many(db, ca.fingerprint(), site, ttl, now_ms(), count)
        .await
        .map_err(|e| match e {
            tokens::IssueError::BadTtl(_) | tokens::IssueError::BadCount(_) => usage(e),
            other => other.into(),
        })?;
    let Some(first) = issued.first() else {
        return Ok(());
    };
    let head = if issued.len() == 1 {
        format!(
            "join token for site {} (works once, expires {})",
            first.site_name,
            format_ts(first.expires_at_ms)
        )
    } else {
        format!(
            "{} join tokens for site {}, one per edge (each works once, they expire {})",
            issued.len(),
            first.site_name,
            format_ts(first.expires_at_ms)
        )
    };
    let mut text = format!(
        "{head}; enrol an edge with\n  netbootd enroll --config FILE --control HOST:PORT \
         --token TOKEN"
    );
    for t in &issued {
        text.push('\n');
        text.push_str(&t.token.to_string());
    }
    say(&text)?;
    Ok(())
}

async fn worker_command(db: &Db, cmd: WorkerCmd) -> Result<(), Failure> {
    match cmd {
        WorkerCmd::Revoke { id } => match registry::revoke(db, &id, now_ms()).await {
            Ok(r) if r.already && r.certificates == 0 => {
                say(&format!("worker {} was already revoked", r.worker_id))?;
            }
            Ok(r) => say(&format!(
                "revoked worker {} and {} certificate(s); its uplink connection closes within \
                 seconds",
                r.worker_id, r.certificates
            ))?,
            Err(StoreError::NotFound(_)) => {
                return Err(anyhow::anyhow!(
                    "no worker `{id}`; list the workers with `ims-control worker list`"
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        },
        WorkerCmd::List => {
            let now = now_ms();
            let mut conn = db.pool().acquire().await.map_err(StoreError::from)?;
            let mut all = Vec::new();
            for page in 1.. {
                let request = PageRequest {
                    page,
                    page_size: MAX_PAGE_SIZE,
                };
                let (count, list) =
                    worker_store::list(&mut conn, WorkerFilter::default(), now, request).await?;
                let done = list.is_empty() || all.len() + list.len() >= usize::try_from(count)?;
                all.extend(list);
                if done {
                    break;
                }
            }
            let width = all
                .iter()
                .map(|w| w.worker_id.len())
                .max()
                .unwrap_or(0)
                .max("WORKER_ID".len());
            let mut lines = vec![format!(
                "{:<6} {:<width$} {:<16} {:<8} {:<24} {:<10} REVOKED",
                "ID", "WORKER_ID", "SITE", "STATUS", "LAST_HEARTBEAT", "VERSION"
            )];
            for w in all {
                lines.push(format!(
                    "{:<6} {:<width$} {:<16} {:<8} {:<24} {:<10} {}",
                    w.id,
                    w.worker_id,
                    w.site_name.as_deref().unwrap_or("-"),
                    w.status.as_str(),
                    w.last_heartbeat.map_or_else(|| "-".to_owned(), format_ts),
                    if w.version.is_empty() {
                        "-"
                    } else {
                        &w.version
                    },
                    if w.revoked { "yes" } else { "no" },
                ));
            }
            say(&lines.join("\n"))?;
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: ServeConfig) -> Result<(), Failure> {
    server::install_crypto_provider();
    let tls = match &config.tls {
        Some(files) => Some(server::load_tls_with_leaf(files).map_err(usage)?),
        None => None,
    };
    let (tls, tls_leaf) = tls.unzip();
    if let Some(path) = &config.o2ims.callback_ca {
        let certs = delivery::load_ca_file(path)
            .map_err(|m| usage(anyhow::anyhow!("--callback-ca: {m}")))?;
        delivery::trust_callback_cas(certs);
    }
    let smo = registration::Registration::from_config(&config.o2ims)
        .map_err(|e| usage(anyhow::anyhow!("{e}")))?;
    let db = server::open_store(&config.store).await?;
    db.migrate().await.context("migrating the store")?;
    let given = std::env::var("IMS_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    match server::create_first_admin(&db, given)
        .await
        .context("creating the first admin")?
    {
        FirstAdmin::Existing => {}
        FirstAdmin::CreatedWithGiven => {
            info!("created user admin with the password from IMS_ADMIN_PASSWORD");
        }
        FirstAdmin::CreatedWithGenerated(password) => {
            say(&format!(
                "created user admin with password: {password} \
                 (shown once; change it with ims-control user passwd admin)"
            ))?;
        }
    }
    let state = AppState::new(db.clone(), config.auth)
        .await
        .context("loading the token signing keys")?;
    if let Some(leaf) = &tls_leaf {
        state.metrics.set_https_cert(leaf);
    }
    // Automatic signing-key rotation, stopped with the process.
    let _key_rotation = config.key_rotation.map(|period| {
        info!(
            period = %humantime::format_duration(period),
            "token signing key rotated automatically"
        );
        rotation::spawn_auto_rotation(db.clone(), state.auth.clone(), period)
    });
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr().unwrap_or(config.listen);
    let ca = Arc::new(
        Ca::load_or_create(&db)
            .await
            .context("loading the uplink CA")?,
    );
    let uplink = UplinkServer::bind(state.clone(), ca.clone(), config.uplink.clone())?;
    let quic_local = uplink.local_addr().unwrap_or(config.uplink.listen);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The HTTP line first: scripts and tests take the first "listening on" as the API's URL.
    info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %config.store,
        access_ttl = %humantime::format_duration(config.auth.access_ttl),
        refresh_ttl = %humantime::format_duration(config.auth.refresh_ttl),
        "listening on {scheme}://{local}"
    );
    info!(
        ca_fingerprint = ca.fingerprint(),
        heartbeat_interval = %humantime::format_duration(config.uplink.heartbeat_interval),
        "quic listening on {quic_local}"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let quic = tokio::spawn(uplink.run(stopped(stop_rx.clone())));
    let registration = smo.map(|mut r| {
        r.fallback_endpoint = format!("{scheme}://{local}");
        info!(smo_url = %r.smo_url, "registering the O-Cloud with the SMO");
        tokio::spawn(registration::run(db.clone(), r, state.metrics.clone()))
    });
    let result = server::serve(state, listener, tls, stopped(stop_rx)).await;
    if let Some(task) = registration {
        task.abort();
    }
    let _ = quic.await;
    db.close().await;
    result.context("HTTP server")?;
    info!("ims-control stopped");
    Ok(())
}

async fn user_command(db: &Db, cmd: UserCmd) -> Result<(), Failure> {
    match cmd {
        UserCmd::Add {
            name,
            role,
            password,
        } => {
            let role: UserRole = role
                .parse()
                .map_err(|e| usage(anyhow::anyhow!("--role: {e}")))?;
            users::validate_username(&name)
                .map_err(|m| usage(anyhow::anyhow!("username `{name}` {m}")))?;
            if users::by_username(db, &name).await?.is_some() {
                return Err(exists(&name).into());
            }
            let (pass, generated) = new_password(&password)?;
            let hash = hash(pass.clone()).await?;
            let mut tx = db.begin_write().await?;
            let user = match users::create(&mut tx, &name, &hash, role, now_ms()).await {
                Err(StoreError::Conflict { .. }) => return Err(exists(&name).into()),
                other => other?,
            };
            tx.commit().await.map_err(StoreError::from)?;
            if generated {
                say(&format!(
                    "created user {} ({}) with password: {pass}",
                    user.username, user.role
                ))?;
            } else {
                say(&format!("created user {} ({})", user.username, user.role))?;
            }
        }
        UserCmd::Passwd { name, password } => {
            let user = find_user(db, &name).await?;
            let (pass, generated) = new_password(&password)?;
            let password_hash = Some(hash(pass.clone()).await?);
            let mut tx = db.begin_write().await?;
            let change = UserChange {
                password_hash,
                role: None,
            };
            users::update(&mut tx, user.id, change, now_ms()).await?;
            tx.commit().await.map_err(StoreError::from)?;
            if generated {
                say(&format!("new password of {}: {pass}", user.username))?;
            } else {
                say(&format!("password of {} changed", user.username))?;
            }
        }
        UserCmd::Del { name } => {
            let user = find_user(db, &name).await?;
            let mut tx = db.begin_write().await?;
            match users::delete(&mut tx, user.id).await {
                Err(StoreError::Conflict { .. }) => {
                    return Err(anyhow::anyhow!(
                        "user `{}` is the last admin and cannot be deleted; first create \
                         another admin with `ims-control user add NAME --role admin`",
                        user.username
                    )
                    .into());
                }
                other => other?,
            };
            tx.commit().await.map_err(StoreError::from)?;
            say(&format!("deleted user {}", user.username))?;
        }
        UserCmd::List => {
            let (_, list) = users::list(db, None, i64::MAX, 0).await?;
            let width = list
                .iter()
                .map(|u| u.username.len())
                .max()
                .unwrap_or(0)
                .max("USERNAME".len());
            let mut lines = vec![format!(
                "{:<6} {:<width$} {:<7} CREATED",
                "ID", "USERNAME", "ROLE"
            )];
            for u in list {
                lines.push(format!(
                    "{:<6} {:<width$} {:<7} {}",
                    u.id,
                    u.username,
                    u.role.as_str(),
                    format_ts(u.created_at)
                ));
            }
            say(&lines.join("\n"))?;
        }
    }
    Ok(())
}

fn exists(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "user `{name}` already exists; set its password with `ims-control user passwd {name}`"
    )
}

async fn find_user(db: &Db, name: &str) -> Result<users::User, Failure> {
    match users::by_username(db, name).await? {
        Some((user, _)) => Ok(user),
        None => Err(anyhow::anyhow!(
            "no user `{name}`; list the users with `ims-control user list`"
        )
        .into()),
    }
}

/// The password for `user add`/`passwd` and whether it was generated.
fn new_password(args: &PasswordArgs) -> Result<(String, bool), Failure> {
    let given = if args.password_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        std::env::var("IMS_USER_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
    };
    match given {
        Some(p) => {
            users::validate_password(&p).map_err(|m| usage(anyhow::anyhow!("the password {m}")))?;
            Ok((p, false))
        }
        None => Ok((server::generate_password(), true)),
    }
}

async fn hash(pass: String) -> anyhow::Result<String> {
    Ok(password::hash_password_async(pass).await?)
}

/// Writes a line for the operator to standard output.
fn say(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Completes once `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
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
            error!("cannot listen for SIGTERM ({e}); stop ims-control with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("shutdown requested; finishing open requests");
}
