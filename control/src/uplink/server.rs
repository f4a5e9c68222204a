//! The uplink's QUIC endpoint: [`UplinkServer::bind`] issues the server certificate from the
//! CA and binds the UDP socket; [`UplinkServer::run`] accepts connections until shut down and
//! sends each to the enrolment handler or the session driver by its ALPN.
//!
//! An uplink (`ims-uplink/1`) connection must present a client certificate (TLS verified it
//! chains to the CA); one without is answered `ErrorReply{Unauthorized}` and closed. Its
//! worker id, site and serial come from the certificate only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ims_proto::{ErrorCode, alpn, enroll_alpn};
use quinn::crypto::rustls::HandshakeData;
use quinn::{Connection, Endpoint, Incoming, VarInt};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use crate::db::now_ms;
use crate::state::AppState;
use crate::uplink::ca::{Ca, CaError};
use crate::uplink::identity::peer_identity;
use crate::uplink::revs::{self, Revs};
use crate::uplink::snapshot::SnapshotCache;
use crate::uplink::tls::{self, TlsSetupError};
use crate::uplink::{conn, enroll, wire};

/// Default `--quic-listen`.
pub const DEFAULT_QUIC_LISTEN: &str = "0.0.0.0:7443";
/// Default `--heartbeat-interval`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long connections get to close at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Settings of the uplink endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkSettings {
    /// UDP address to listen on (port 0 picks one).
    pub listen: SocketAddr,
    /// Extra names (DNS names or IP addresses) for the server certificate.
    pub names: Vec<String>,
    /// The heartbeat interval edges are told in Welcome.
    pub heartbeat_interval: Duration,
}

impl Default for UplinkSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            names: Vec::new(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }
}

/// Why the uplink endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The server certificate could not be issued.
    #[error("cannot issue the QUIC server certificate: {0}")]
    Certificate(#[from] CaError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The UDP socket could not be bound.
    #[error("cannot listen for QUIC on {addr}: {source}; pick another --quic-listen address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
}

/// What connection handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The store and the rest of the app state.
    pub(crate) app: AppState,
    /// The CA.
    pub(crate) ca: Arc<Ca>,
    /// Endpoint settings.
    pub(crate) settings: UplinkSettings,
    /// The change counters.
    pub(crate) revs: watch::Receiver<Revs>,
    /// The sites' latest snapshots.
    pub(crate) snapshots: SnapshotCache,
}

/// A bound uplink endpoint.
#[derive(Debug)]
pub struct UplinkServer {
    endpoint: Endpoint,
    shared: Arc<Shared>,
}

impl UplinkServer {
    /// Issues the server certificate, binds `settings.listen` and starts the change-counter
    /// watcher. Call inside a Tokio runtime.
    ///
    /// # Errors
    /// See [`UplinkError`].
    pub fn bind(app: AppState, ca: Arc<Ca>, settings: UplinkSettings) -> Result<Self, UplinkError> {
        let cert = ca.issue_server_cert(&settings.names, now_ms())?;
        if let Some(server) = cert.chain.first() {
            app.metrics.set_uplink_certs(ca.cert_der(), server);
        }
        let config = tls::server_config(&ca, cert)?;
        let endpoint =
            Endpoint::server(config, settings.listen).map_err(|source| UplinkError::Bind {
                addr: settings.listen,
                source,
            })?;
        let revs = revs::spawn_watcher(app.db.clone(), revs::POLL_INTERVAL);
        Ok(Self {
            endpoint,
            shared: Arc::new(Shared {
                app,
                ca,
                settings,
                revs,
                snapshots: SnapshotCache::new(),
            }),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The socket is gone.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The CA's fingerprint (what join tokens carry).
    #[must_use]
    pub fn ca_fingerprint(&self) -> &str {
        self.shared.ca.fingerprint()
    }

    /// Accepts connections until `shutdown` completes, then closes them all (waiting up to
    /// [`SHUTDOWN_GRACE`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    tokio::spawn(handle(self.shared.clone(), incoming));
                }
                () = &mut shutdown => break,
            }
        }
        self.endpoint.close(
            VarInt::from_u32(wire::CLOSE_UNAVAILABLE),
            b"control plane shutting down",
        );
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// The ALPN a connection negotiated.
fn negotiated_alpn(conn: &Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<HandshakeData>()
        .ok()?
        .protocol
}

/// The leaf of the client certificate chain, if one was presented.
fn client_leaf(conn: &Connection) -> Option<CertificateDer<'static>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

async fn handle(shared: Arc<Shared>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::info!(%remote, "QUIC handshake failed: {e}");
            return;
        }
    };
    let alpn_used = negotiated_alpn(&conn);
    if alpn_used.as_deref() == Some(enroll_alpn()) {
        enroll::serve(shared, conn).await;
        return;
    }
    if alpn_used.as_deref() != Some(alpn()) {
        conn.close(VarInt::from_u32(wire::CLOSE_PROTOCOL), b"unknown ALPN");
        return;
    }
    let Some(leaf) = client_leaf(&conn) else {
        tracing::info!(%remote, "uplink connection without a client certificate refused");
        wire::refuse(
            &conn,
            wire::reply(
                ErrorCode::Unauthorized,
                "an uplink connection needs the edge's client certificate: enrol the edge \
                 first (netbootd enroll --control HOST:PORT --token TOKEN)",
            ),
        )
        .await;
        return;
    };
    match peer_identity(&leaf) {
        Ok(id) => conn::serve(shared, conn, id).await,
        Err(e) => {
            tracing::info!(%remote, "uplink connection refused: {e}");
            wire::refuse(&conn, wire::reply(ErrorCode::Unauthorized, e.to_string())).await;
        }
    }
}
