//! The control plane's certificate authority for the edge uplink.
//!
//! On its first start the control plane creates a CA (ECDSA P-256, CN `ims-control CA`, valid
//! ten years) and keeps its certificate and key, PEM, in the store's `settings` table under
//! [`SETTINGS_KEY`] ([`Ca::load_or_create`]). Creation is race-free across replicas sharing a
//! database: each proposes a CA with `INSERT … ON CONFLICT DO NOTHING` and everyone uses the
//! one stored. The key is never logged (`Debug` shows the fingerprint only).
//!
//! The CA issues:
//! * at every start, the QUIC server certificate ([`Ca::issue_server_cert`]): SAN DNS
//!   `ims-control` (the name edges always connect with), `localhost`, IP `127.0.0.1` and the
//!   `--quic-name` values; served as the chain `[server, CA]`, so an enrolling edge finds the CA
//!   by the fingerprint in its join token;
//! * during enrolment, worker certificates from a CSR ([`parse_csr`], which checks the CSR's
//!   self-signature, then [`Ca::issue_worker_cert`]): CN and SAN URI name the worker, a second
//!   SAN URI the site, EKU clientAuth, valid one year, random 126-bit serial.
//!
//! The CA's fingerprint (lower-case hex SHA-256 of its DER) is what join tokens carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use crate::db::{Db, StoreError, now_ms};
use crate::uplink::identity::{SITE_URI_PREFIX, WORKER_URI_PREFIX, fingerprint, hex};

/// The `settings` key holding the CA (JSON: certificate and key PEM).
pub const SETTINGS_KEY: &str = "uplink_ca";
/// The CA's common name.
pub const CA_COMMON_NAME: &str = "ims-control CA";
/// The name edges verify the control plane's QUIC certificate against.
pub const SERVER_NAME: &str = "ims-control";
/// CA lifetime, days.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Worker certificate lifetime, days.
pub const WORKER_VALIDITY_DAYS: i64 = 365;
/// QUIC server certificate lifetime, days (it is issued again at every start).
pub const SERVER_VALIDITY_DAYS: i64 = 365;
/// Certificates start this long before their issue time, for clock skew (milliseconds).
pub const BACKDATE_MS: i64 = 3_600_000;

const DAY_MS: i64 = 86_400_000;

/// Why the CA could not be loaded or a certificate not issued.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The stored CA cannot be used.
    #[error(
        "the uplink CA stored in the settings table (key `uplink_ca`) is unusable: {0}; restore \
         it from a backup (edges trust only that CA)"
    )]
    Stored(String),
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A name for a certificate is not acceptable.
    #[error(
        "`{0}` cannot be put in a certificate: use a DNS name (letters, digits, `.`, `-`) or an IP address"
    )]
    BadName(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A certificate signing request that parsed and whose self-signature verified.
pub struct WorkerCsr(CertificateSigningRequestParams);

impl fmt::Debug for WorkerCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCsr")
            .field("algorithm", &self.0.public_key.algorithm())
            .finish_non_exhaustive()
    }
}

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the certificate signing request is not usable ({0}); send a DER PKCS#10 request signed by \
     the edge's new key, with no extensions other than key usage and subject alternative names"
)]
pub struct CsrError(pub String);

/// Parses a DER PKCS#10 request and verifies its self-signature (rcgen's `from_der` does, with
/// x509-parser's `verify` feature): a request whose signature does not match its public key is
/// refused, so the requester holds the key it asks a certificate for.
///
/// # Errors
/// Empty, malformed, unsupported algorithm or extension, or a bad signature.
pub fn parse_csr(der: &[u8]) -> Result<WorkerCsr, CsrError> {
    if der.is_empty() {
        return Err(CsrError("it is empty".to_owned()));
    }
    let der = CertificateSigningRequestDer::from(der.to_vec());
    CertificateSigningRequestParams::from_der(&der)
        .map(WorkerCsr)
        .map_err(|e| CsrError(e.to_string()))
}

/// The QUIC server certificate chain and its key.
pub struct ServerCert {
    /// `[server certificate, CA certificate]`.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server certificate's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A worker certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial, lower-case hex (as [`PeerIdentity::serial`](super::identity::PeerIdentity)
    /// reads it back).
    pub serial: String,
    /// Start of validity (Unix ms).
    pub not_before_ms: i64,
    /// End of validity (Unix ms).
    pub not_after_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_pem: String,
    created_ms: i64,
}

/// The CA: its certificate, key and fingerprint.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
    /// The CA re-made from its parameters, for rcgen's `signed_by` (same name and key).
    issuer: Certificate,
    fingerprint: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Unix ms as a certificate time (clamped to 1970..9999).
fn datetime(ms: i64) -> OffsetDateTime {
    let secs = ms.div_euclid(1000).clamp(0, 253_402_300_799);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A random positive serial of 16 bytes whose first byte is 0x40..=0x7f, so its DER encoding
/// is exactly these bytes (no sign padding, no stripped zero).
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    if getrandom::fill(&mut serial).is_err() {
        tracing::error!("the operating system's random source failed");
    }
    serial[0] = (serial[0] & 0x3f) | 0x40;
    serial
}

fn dns_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*'))
}

fn san(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if !dns_ok(name) {
        return Err(CaError::BadName(name.to_owned()));
    }
    let ia5 = name
        .to_owned()
        .try_into()
        .map_err(|_| CaError::BadName(name.to_owned()))?;
    Ok(SanType::DnsName(ia5))
}

fn uri(text: String) -> Result<SanType, CaError> {
    let ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !ok {
        return Err(CaError::BadName(text));
    }
    let ia5 = text
        .clone()
        .try_into()
        .map_err(|_| CaError::BadName(text))?;
    Ok(SanType::URI(ia5))
}

impl Ca {
    /// A new CA (ECDSA P-256, CN [`CA_COMMON_NAME`], valid [`CA_VALIDITY_DAYS`] from `now_ms`).
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn generate(now_ms: i64) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = datetime(now_ms - BACKDATE_MS);
        params.not_after = datetime(now_ms + CA_VALIDITY_DAYS * DAY_MS);
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// The CA from its certificate and key, PEM.
    ///
    /// # Errors
    /// Either does not parse, or the key is not the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::Stored(format!("certificate: {e}")))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Stored(format!("key: {e}")))?;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&cert_der)
            .map_err(|e| CaError::Stored(format!("certificate: {e}")))?;
        if parsed.tbs_certificate.subject_pki.raw != key.public_key_der().as_slice() {
            return Err(CaError::Stored(
                "the key does not belong to the certificate".to_owned(),
            ));
        }
        let issuer = CertificateParams::from_ca_cert_der(&cert_der)
            .map_err(|e| CaError::Stored(format!("certificate: {e}")))?
            .self_signed(&key)?;
        Ok(Self {
            fingerprint: fingerprint(&cert_der),
            cert_der,
            cert_pem: cert_pem.to_owned(),
            key,
            issuer,
        })
    }

    /// Loads the CA from the store, creating and storing one first if there is none (race-free
    /// across replicas: the first insert wins and everyone reads it back).
    ///
    /// # Errors
    /// The store failed or holds an unusable CA.
    pub async fn load_or_create(db: &Db) -> Result<Self, CaError> {
        let existing = Self::stored(db).await?;
        let value = match existing {
            Some(v) => v,
            None => {
                let now = now_ms();
                let fresh = Self::generate(now)?;
                let stored = StoredCa {
                    cert_pem: fresh.cert_pem.clone(),
                    key_pem: fresh.key.serialize_pem(),
                    created_ms: now,
                };
                let json = serde_json::to_string(&stored)
                    .map_err(|e| CaError::Stored(format!("cannot encode: {e}")))?;
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(SETTINGS_KEY)
                .bind(json)
                .execute(db.pool())
                .await
                .map_err(StoreError::from)?;
                Self::stored(db)
                    .await?
                    .ok_or_else(|| CaError::Stored("it vanished after being stored".to_owned()))?
            }
        };
        let stored: StoredCa = serde_json::from_str(&value)
            .map_err(|e| CaError::Stored(format!("not the expected JSON: {e}")))?;
        Self::from_pem(&stored.cert_pem, &stored.key_pem)
    }

    async fn stored(db: &Db) -> Result<Option<String>, CaError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(SETTINGS_KEY)
            .fetch_optional(db.pool())
            .await
            .map_err(StoreError::from)?;
        Ok(row.map(|(v,)| v))
    }

    /// Lower-case hex SHA-256 of the CA certificate's DER.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The CA certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A QUIC server certificate with a new key: SAN DNS `ims-control` and `localhost`, IP
    /// `127.0.0.1`, and `extra_names` (DNS names or IP addresses); EKU serverAuth; valid
    /// [`SERVER_VALIDITY_DAYS`] from `now_ms`. The chain is `[server, CA]`.
    ///
    /// # Errors
    /// A name is not a DNS name or IP address; signing failed.
    pub fn issue_server_cert(
        &self,
        extra_names: &[String],
        now_ms: i64,
    ) -> Result<ServerCert, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, SERVER_NAME);
        params.distinguished_name = dn;
        let mut names = vec![
            san(SERVER_NAME)?,
            san("localhost")?,
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        for name in extra_names {
            let s = san(name.trim())?;
            if !names.contains(&s) {
                names.push(s);
            }
        }
        params.subject_alt_names = names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = datetime(now_ms - BACKDATE_MS);
        params.not_after = datetime(now_ms + SERVER_VALIDITY_DAYS * DAY_MS);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(ServerCert {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// A worker certificate for the key in `csr`: CN `worker_id`, SAN URIs
    /// `urn:ims:worker:<worker_id>` and `urn:ims:site:<site>`, EKU clientAuth, valid
    /// [`WORKER_VALIDITY_DAYS`] from `now_ms`, a random serial. Whatever else the CSR asked for
    /// is ignored.
    ///
    /// # Errors
    /// The worker id or site holds characters a URI cannot; signing failed.
    pub fn issue_worker_cert(
        &self,
        csr: WorkerCsr,
        worker_id: &str,
        site: &str,
        now_ms: i64,
    ) -> Result<IssuedCert, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, worker_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            uri(format!("{WORKER_URI_PREFIX}{worker_id}"))?,
            uri(format!("{SITE_URI_PREFIX}{site}"))?,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = random_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let not_before_ms = now_ms - BACKDATE_MS;
        let not_after_ms = now_ms + WORKER_VALIDITY_DAYS * DAY_MS;
        params.not_before = datetime(not_before_ms);
        params.not_after = datetime(not_after_ms);
        params.use_authority_key_identifier_extension = true;
        let mut request = csr.0;
        request.params = params;
        let cert = request.signed_by(&self.issuer, &self.key)?;
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            serial: hex(&serial),
            not_before_ms,
            not_after_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::identity::peer_identity;
    use x509_parser::extensions::GeneralName;

    const NOW: i64 = 1_790_000_000_000;

    fn csr_for(key: &KeyPair) -> Vec<u8> {
        let params = CertificateParams::new(vec!["edge-1".to_owned()]).unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn a_ca_round_trips_through_pem_and_keeps_its_fingerprint() {
        let ca = Ca::generate(NOW).unwrap();
        assert_eq!(ca.fingerprint().len(), 64);
        let again = Ca::from_pem(ca.cert_pem(), &ca.key.serialize_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        let other = Ca::generate(NOW).unwrap();
        let mixed = Ca::from_pem(ca.cert_pem(), &other.key.serialize_pem());
        assert!(
            matches!(mixed, Err(CaError::Stored(ref m)) if m.contains("does not belong")),
            "{mixed:?}"
        );
    }

    #[test]
    fn worker_certificates_name_worker_and_site_with_the_recorded_serial() {
        let ca = Ca::generate(NOW).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = parse_csr(&csr_for(&key)).unwrap();
        let issued = ca.issue_worker_cert(csr, "lab-edge-1", "lab", NOW).unwrap();
        let id = peer_identity(&issued.der).unwrap();
        assert_eq!(id.worker_id, "lab-edge-1");
        assert_eq!(id.site, "lab");
        assert_eq!(id.serial, issued.serial);
        assert_eq!(issued.serial.len(), 32);
        assert_eq!(
            issued.not_after_ms - issued.not_before_ms,
            365 * DAY_MS + BACKDATE_MS
        );
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(
            parsed.tbs_certificate.subject_pki.raw,
            key.public_key_der().as_slice()
        );
        let eku = parsed.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(
            parsed
                .verify_signature(Some(
                    &x509_parser::certificate::X509Certificate::from_der(ca.cert_der())
                        .unwrap()
                        .1
                        .tbs_certificate
                        .subject_pki
                ))
                .is_ok()
        );
    }

    #[test]
    fn csrs_must_parse_and_carry_a_valid_signature() {
        assert!(parse_csr(&[]).is_err());
        assert!(parse_csr(b"not a csr").is_err());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut der = csr_for(&key);
        assert!(parse_csr(&der).is_ok());
        // Flip a bit of the signature (the last bytes): the self-signature no longer verifies.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let err = parse_csr(&der).unwrap_err();
        assert!(err.to_string().contains("PKCS#10"), "{err}");
    }

    #[test]
    fn server_certificates_carry_the_fixed_and_extra_names() {
        let ca = Ca::generate(NOW).unwrap();
        let cert = ca
            .issue_server_cert(&["control.example.org".into(), "10.1.2.3".into()], NOW)
            .unwrap();
        assert_eq!(cert.chain.len(), 2);
        assert_eq!(&cert.chain[1], ca.cert_der());
        let (_, parsed) =
            x509_parser::certificate::X509Certificate::from_der(&cert.chain[0]).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                _ => {}
            }
        }
        assert_eq!(dns, ["ims-control", "localhost", "control.example.org"]);
        assert_eq!(ips, [vec![127, 0, 0, 1], vec![10, 1, 2, 3]]);
        assert!(matches!(
            ca.issue_server_cert(&["bad name".into()], NOW),
            Err(CaError::BadName(_))
        ));
    }
}
