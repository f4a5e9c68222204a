//! TLS and QUIC client settings of a simulated edge: the real edge's own
//! (`ims_netboot::io::uplink::tls`), so the benchmark exercises exactly what `netbootd` does:
//! rustls with the `ring` provider only, TLS 1.3, server name `ims-control`, keep-alive every
//! 5 s and a 30 s idle timeout.
//!
//! * Enrolment ([`enroll_config`], ALPN `ims-enroll/1`, no client certificate): the server is
//!   trusted only if its chain holds the CA whose SHA-256 is the join token's fingerprint, and
//!   the leaf verifies against that CA as the only root.
//! * Uplink ([`uplink_config`], ALPN `ims-uplink/1`, mutual TLS): the edge presents the
//!   certificate it got at enrolment and trusts only the CA from the enrolment response.
//!
//! [`edge_key`] makes the edge's ECDSA P-256 key and its CSR.

use std::sync::Arc;

use ims_netboot::io::uplink::tls::{PinnedCaVerifier, enroll_client_config, uplink_client_config};
use ims_netboot::uplink::token::parse_fingerprint;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// The name the edge always connects to (the control's certificate always has it).
pub const SERVER_NAME: &str = "ims-control";

/// A client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS client set-up failed: {0}")]
pub struct TlsError(String);

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

/// The enrolment client configuration for a token carrying `fingerprint` (64 hex digits).
///
/// # Errors
/// The fingerprint is malformed or rustls refused the configuration.
pub fn enroll_config(fingerprint: &str) -> Result<quinn::ClientConfig, TlsError> {
    let fp = parse_fingerprint(fingerprint)
        .ok_or_else(|| TlsError(format!("`{fingerprint}` is not a SHA-256 fingerprint")))?;
    enroll_client_config(Arc::new(PinnedCaVerifier::new(fp))).map_err(|e| TlsError(e.to_string()))
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
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    uplink_client_config(ca_der, cert_der, key).map_err(|e| TlsError(e.to_string()))
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
