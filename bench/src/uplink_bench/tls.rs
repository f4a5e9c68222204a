//! TLS and QUIC client settings of a simulated edge, as `notes/uplink.md` describes the real
//! one: rustls with the `ring` provider only, TLS 1.3, server name `ims-control`, keep-alive
//! every 5 s and a 30 s idle timeout.
//!
//! * Enrolment ([`enroll_config`], ALPN `ims-enroll/1`, no client certificate): the server is
//!   trusted only if its chain holds the CA whose SHA-256 is the join token's fingerprint, and
//!   the leaf verifies against that CA as the only root ([`FingerprintVerifier`]).
//! * Uplink ([`uplink_config`], ALPN `ims-uplink/1`, mutual TLS): the edge presents the
//!   certificate it got at enrolment and trusts only the CA from the enrolment response.
//!
//! [`edge_key`] makes the edge's ECDSA P-256 key and its CSR.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// The name the edge always connects to (the control's certificate always has it).
pub const SERVER_NAME: &str = "ims-control";
/// QUIC keep-alive, as the edge sets it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// QUIC idle timeout, as the edge sets it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS client set-up failed: {0}")]
pub struct TlsError(String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lower-case hex SHA-256 of `der` (a CA fingerprint).
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CA fingerprint a join token carries: its last `.`-separated part, lower-cased.
#[must_use]
pub fn token_fingerprint(token: &str) -> Option<String> {
    let fp = token.trim().rsplit('.').next()?;
    (fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())).then(|| fp.to_ascii_lowercase())
}

/// Trusts a server chain only if it holds the CA with the pinned fingerprint and the leaf
/// verifies against that CA alone.
#[derive(Debug)]
pub struct FingerprintVerifier {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl FingerprintVerifier {
    /// A verifier pinned to `fingerprint` (lower-case hex SHA-256 of the CA's DER).
    #[must_use]
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_ascii_lowercase(),
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c.as_ref()) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "no certificate of the control plane matches the join token's CA \
                     fingerprint"
                        .to_owned(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
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

fn quic(mut tls: rustls::ClientConfig, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| TlsError(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The enrolment client configuration for a token carrying `fingerprint`.
///
/// # Errors
/// rustls refused the configuration.
pub fn enroll_config(fingerprint: &str) -> Result<quinn::ClientConfig, TlsError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FingerprintVerifier::new(fingerprint)))
        .with_no_client_auth();
    quic(tls, ims_proto::enroll_alpn())
}

/// The uplink client configuration: trust only `ca_der`, present `cert_der` with `key`.
///
/// # Errors
/// The CA, certificate or key is unusable.
pub fn uplink_config(
    ca_der: &[u8],
    cert_der: &[u8],
    key: &KeyPair,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| TlsError(format!("the CA from the enrolment response: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| TlsError(format!("the enrolled certificate and key: {e}")))?;
    quic(tls, ims_proto::alpn())
}

/// A new ECDSA P-256 key and a CSR for it (subject CN `hostname`), DER.
///
/// # Errors
/// rcgen failed.
pub fn edge_key(hostname: &str) -> Result<(KeyPair, Vec<u8>), TlsError> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| TlsError(e.to_string()))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| TlsError(e.to_string()))?;
    params.distinguished_name.push(DnType::CommonName, hostname);
    let csr = params
        .serialize_request(&key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok((key, csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fingerprints() {
        let fp = "AB".repeat(32);
        let token = format!("IMS1.{}.{fp}", "0".repeat(64));
        assert_eq!(token_fingerprint(&token), Some("ab".repeat(32)));
        assert_eq!(token_fingerprint("IMS1.00.zz"), None);
        assert_eq!(
            token_fingerprint(&format!("IMS1.x.{}", "g".repeat(64))),
            None
        );
    }

    #[test]
    fn keys_make_csrs_and_configs_build() {
        let (key, csr) = edge_key("edge-1").unwrap();
        assert_eq!(csr.first(), Some(&0x30), "a DER SEQUENCE");
        assert!(enroll_config(&"ab".repeat(32)).is_ok());
        // A self-signed certificate stands in for the CA and the edge certificate.
        let cert = CertificateParams::new(vec!["edge-1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(uplink_config(cert.der(), cert.der(), &key).is_ok());
        assert!(uplink_config(b"not a certificate", cert.der(), &key).is_err());
        assert_eq!(fingerprint(b"").len(), 64);
    }
}
