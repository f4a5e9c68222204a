//! TLS for the uplink (rustls with the ring provider only, TLS 1.3 as QUIC requires).
//!
//! - Enrolment ([`enroll_client_config`]): the edge has no certificate and does not know the
//!   control plane's CA yet, only its SHA-256 fingerprint from the join token.
//!   [`PinnedCaVerifier`] looks for the certificate with that fingerprint among those the
//!   server sent, then verifies the server's certificate with webpki against it as the only
//!   trust anchor (and the server name). A chain without it fails the handshake, and the
//!   verifier remembers which fingerprints it saw so the caller can say so plainly.
//! - Uplink ([`uplink_client_config`]): mutual TLS. The edge presents its certificate and key
//!   from enrolment and trusts only the CA it received then.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ims_proto::{alpn, enroll_alpn};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::uplink::token::{fingerprint, hex};

/// QUIC keep-alive on the uplink (keeps NAT bindings and notices a dead path).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// QUIC idle timeout on the uplink.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration for the control plane: {0}")]
pub struct TlsError(String);

/// The ring provider (never aws-lc-rs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Install ring as the process's default rustls provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Verifies the server against the CA whose fingerprint is pinned (see the module docs).
#[derive(Debug)]
pub struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Fingerprints of the certificates a server sent when none matched.
    mismatch: Mutex<Option<Vec<String>>>,
}

impl PinnedCaVerifier {
    /// A verifier trusting only the CA certificate with SHA-256 `fingerprint`.
    pub fn new(fingerprint: [u8; 32]) -> Self {
        Self {
            fingerprint,
            provider: provider(),
            mismatch: Mutex::new(None),
        }
    }

    /// When a handshake failed because no certificate matched: the fingerprints the server
    /// sent (lower-case hex).
    pub fn mismatch(&self) -> Option<Vec<String>> {
        self.mismatch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| fingerprint(c.as_ref()) == self.fingerprint)
        else {
            let seen = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| hex(&fingerprint(c.as_ref())))
                .collect();
            *self.mismatch.lock().unwrap_or_else(PoisonError::into_inner) = Some(seen);
            return Err(rustls::Error::General(
                "no certificate of the control plane matches the CA fingerprint of the join token"
                    .to_owned(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The QUIC client configuration of enrolment: server verified by `verifier`, no client
/// certificate, ALPN `ims-enroll/1`.
///
/// # Errors
/// When rustls refuses the configuration.
pub fn enroll_client_config(
    verifier: Arc<PinnedCaVerifier>,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![enroll_alpn().to_vec()];
    quic(tls)
}

/// The QUIC client configuration of the uplink: trusts only `ca_der`, presents `cert_der`
/// with `key`, ALPN `ims-uplink/1`, keep-alive and idle timeout set.
///
/// # Errors
/// When the certificate or key is unusable.
pub fn uplink_client_config(
    ca_der: &[u8],
    cert_der: &[u8],
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError(format!("the stored CA certificate is unusable: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(cert_der.to_vec())], key)
        .map_err(|e| TlsError(format!("the stored certificate and key do not fit: {e}")))?;
    tls.alpn_protocols = vec![alpn().to_vec()];
    let mut config = quic(tls)?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| TlsError(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

fn quic(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}
