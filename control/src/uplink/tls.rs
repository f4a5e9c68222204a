//! TLS and QUIC settings of the uplink endpoint: rustls with the `ring` provider only, TLS 1.3
//! (QUIC needs it), ALPN `ims-uplink/1` and `ims-enroll/1`, the server chain `[server, CA]`,
//! and client certificates verified against the CA but optional at the TLS level (enrolment
//! connections have none; uplink connections without one are refused by the session code).
//! QUIC keeps connections alive every [`KEEP_ALIVE`] and drops them after [`IDLE_TIMEOUT`]
//! of silence.

use std::sync::Arc;
use std::time::Duration;

use ims_proto::{alpn, enroll_alpn};
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};

use crate::uplink::ca::{Ca, ServerCert};

/// QUIC keep-alive interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// QUIC idle timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// rustls refused a certificate, key or setting.
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS client verifier set-up failed: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// The rustls configuration lacks what QUIC needs.
    #[error("the TLS configuration cannot be used for QUIC: {0}")]
    Quic(#[from] NoInitialCipherSuite),
}

/// The QUIC transport settings shared by every uplink connection.
#[must_use]
pub fn transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // 30 s fits a VarInt of milliseconds; the fallback is quinn's default.
    if let Ok(idle) = IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    // The edge opens one bidirectional stream per connection.
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t
}

/// The rustls server configuration for `cert` (chain `[server, CA]`), verifying optional client
/// certificates against `ca`.
///
/// # Errors
/// See [`TlsSetupError`].
pub fn server_crypto(ca: &Ca, cert: ServerCert) -> Result<rustls::ServerConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![alpn().to_vec(), enroll_alpn().to_vec()];
    Ok(config)
}

/// The quinn server configuration: [`server_crypto`] plus [`transport`].
///
/// # Errors
/// See [`TlsSetupError`].
pub fn server_config(ca: &Ca, cert: ServerCert) -> Result<quinn::ServerConfig, TlsSetupError> {
    let crypto = QuicServerConfig::try_from(server_crypto(ca, cert)?)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_offers_both_alpns_over_tls13_only() {
        let ca = Ca::generate(crate::db::now_ms()).unwrap_or_else(|e| panic!("{e}"));
        let cert = ca
            .issue_server_cert(&[], crate::db::now_ms())
            .unwrap_or_else(|e| panic!("{e}"));
        let config = server_crypto(&ca, cert).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"ims-uplink/1".to_vec(), b"ims-enroll/1".to_vec()]
        );
        let ca2 = Ca::generate(crate::db::now_ms()).unwrap_or_else(|e| panic!("{e}"));
        let cert = ca2
            .issue_server_cert(&[], crate::db::now_ms())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(server_config(&ca2, cert).is_ok());
    }
}
