//! Running the control plane: opening the store, the first admin, TLS set-up and the HTTP(S)
//! server with graceful shutdown. `main.rs` wires these to the command line.
//!
//! TLS uses rustls with the `ring` provider only, installed explicitly
//! ([`install_crypto_provider`]); certificates and keys are PEM files. The server passes each
//! connection's peer address to handlers (`ConnectInfo<SocketAddr>`), which the login throttle
//! uses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::api;
use crate::auth::jwt::random_hex;
use crate::auth::password;
use crate::config::{StoreLocation, TlsFiles};
use crate::db::{Db, DbError, StoreError, now_ms};
use crate::state::AppState;
use crate::store::users;

/// Connections of a PostgreSQL pool (SQLite uses [`Db::open_data_dir`]'s own).
pub const PG_MAX_CONNECTIONS: u32 = 16;
/// How long open requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why HTTPS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load the TLS {what} from {path}: {message}")]
    Load {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the pair.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(#[from] rustls::Error),
}

/// Why first-start set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `IMS_ADMIN_PASSWORD` is too short or too long.
    #[error("IMS_ADMIN_PASSWORD {0}")]
    WeakPassword(String),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] password::HashError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What first-start set-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstAdmin {
    /// Users existed already (or another replica created the admin): nothing done.
    Existing,
    /// `admin` was created with the given password.
    CreatedWithGiven,
    /// `admin` was created with this generated password (show it once).
    CreatedWithGenerated(String),
}

/// Installs rustls's `ring` provider as the process default (a no-op when one is installed).
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Opens (and creates, for SQLite) the store.
///
/// # Errors
/// The directory cannot be created or the database cannot be reached.
pub async fn open_store(location: &StoreLocation) -> Result<Db, DbError> {
    match location {
        StoreLocation::DataDir(dir) => Db::open_data_dir(dir).await,
        StoreLocation::Url(url) => Db::connect(url, PG_MAX_CONNECTIONS).await,
    }
}

/// A random password for a new account (24 hex digits, 96 bits).
#[must_use]
pub fn generate_password() -> String {
    random_hex(12)
}

/// Creates the user `admin` when the store has no users at all, with `given` (from
/// `IMS_ADMIN_PASSWORD`) or a generated password. Race-safe across replicas: only one creates it.
///
/// # Errors
/// `given` is not an acceptable password, or the store failed.
pub async fn create_first_admin(db: &Db, given: Option<String>) -> Result<FirstAdmin, SetupError> {
    if let Some(p) = &given {
        users::validate_password(p).map_err(SetupError::WeakPassword)?;
    }
    if users::count(db).await? > 0 {
        return Ok(FirstAdmin::Existing);
    }
    let (password, generated) = match given {
        Some(p) => (p, false),
        None => (generate_password(), true),
    };
    let hash = password::hash_password_async(password.clone()).await?;
    if !users::create_first_admin(db, &hash, now_ms()).await? {
        return Ok(FirstAdmin::Existing);
    }
    Ok(if generated {
        FirstAdmin::CreatedWithGenerated(password)
    } else {
        FirstAdmin::CreatedWithGiven
    })
}

/// Reads the PEM certificate chain and key into a rustls server configuration (ring provider,
/// TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`).
///
/// # Errors
/// A file cannot be read, holds no certificate or key, or the pair does not match.
pub fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, TlsError> {
    load_tls_with_leaf(files).map(|(config, _)| config)
}

/// [`load_tls`], also answering the serving (first) certificate of the chain, as read, for
/// its expiry gauge ([`crate::metrics::Metrics::set_https_cert`]).
///
/// # Errors
/// As [`load_tls`].
pub fn load_tls_with_leaf(
    files: &TlsFiles,
) -> Result<(RustlsConfig, CertificateDer<'static>), TlsError> {
    let certs = read_certs(&files.cert)?;
    // read_certs refuses an empty chain.
    let leaf = certs
        .first()
        .cloned()
        .unwrap_or_else(|| CertificateDer::from(Vec::new()));
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Load {
        what: "private key",
        path: files.key.display().to_string(),
        message: pem_message(&e),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((RustlsConfig::from_config(Arc::new(config)), leaf))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let load_error = |message: String| TlsError::Load {
        what: "certificate",
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_error(pem_message(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_error(pem_message(&e)))?;
    if certs.is_empty() {
        return Err(load_error(
            "no `BEGIN CERTIFICATE` block found; give a PEM certificate chain".to_owned(),
        ));
    }
    Ok(certs)
}

fn pem_message(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind found".to_owned()
        }
        other => other.to_string(),
    }
}

/// Serves the API on `listener` (HTTPS when `tls` is set) until `shutdown` completes, then
/// lets open requests finish for up to [`SHUTDOWN_GRACE`]. Also runs the O2ims notification
/// tasks ([`crate::o2ims::delivery::spawn`]) meanwhile.
///
/// # Errors
/// The listener cannot be used.
pub async fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // O2ims change detection and notification delivery, stopped with the server.
    let notifications = crate::o2ims::delivery::spawn(&state.db);
    // O2ims alarm evaluation and alarm notification delivery, likewise.
    let alarms = crate::o2ims::monitoring::spawn(&state.db);
    // Signing keys: pruned when expired and reloaded from the store (rotation by any replica).
    let key_refresh = crate::auth::rotation::spawn_refresh(state.db.clone(), state.auth.clone());
    let handle = Handle::new();
    let stopper = handle.clone();
    let stop_task = tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    // Security headers around everything served (crate::security), the API sets them too.
    let app = tower::Layer::layer(
        &crate::security::ResponseHeaders::security(),
        api::app(state),
    );
    let result = match tls {
        Some(config) => {
            // HTTPS only: Strict-Transport-Security on every response (crate::security).
            let service = <_ as axum::ServiceExt<axum::extract::Request>>::into_make_service_with_connect_info::<
                SocketAddr,
            >(tower::Layer::layer(&crate::security::ResponseHeaders::hsts(), app));
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            let service = <_ as axum::ServiceExt<axum::extract::Request>>::into_make_service_with_connect_info::<
                SocketAddr,
            >(app);
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(service)
                .await
        }
    };
    stop_task.abort();
    drop(notifications);
    drop(alarms);
    drop(key_refresh);
    result
}
