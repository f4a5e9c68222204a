//! Worker identities: how a worker id is made from a site and a host name, the names a worker
//! certificate carries, and reading them back from the certificate a peer presents.
//!
//! A worker certificate names its worker in the subject CN and in the SAN URI
//! `urn:ims:worker:<worker_id>`, and its site in `urn:ims:site:<site name>`. The control plane
//! takes a connection's identity only from these (never from a message), and checks the
//! certificate's serial against the store for revocation.
//!
//! Everything here is pure.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Prefix of the SAN URI naming the worker.
pub const WORKER_URI_PREFIX: &str = "urn:ims:worker:";
/// Prefix of the SAN URI naming the site.
pub const SITE_URI_PREFIX: &str = "urn:ims:site:";
/// Longest worker id made from a site and a host name, before a uniqueness suffix (`-2`, …).
/// Event ids (`<worker_id>:<seq>`) stay under the store's 128-byte key limit.
pub const MAX_WORKER_ID_BASE: usize = 90;
/// Longest accepted worker id (base plus suffix).
pub const MAX_WORKER_ID: usize = 100;

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of a certificate: lower-case hex SHA-256 of its DER (64 characters).
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// Whether `s` is 64 lower- or upper-case hex digits (a SHA-256 in hex).
#[must_use]
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `s` lower-cased with every run of characters other than `[a-z0-9]` turned into one `-`,
/// without leading or trailing `-`.
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The worker id for an edge called `hostname` at `site`, before uniqueness: `<site>-<hostname>`
/// lower-cased, only `[a-z0-9-]`, at most [`MAX_WORKER_ID_BASE`] characters. An empty host
/// name becomes `edge`.
#[must_use]
pub fn worker_id_base(site: &str, hostname: &str) -> String {
    let host = slug(hostname);
    let host = if host.is_empty() {
        "edge".to_owned()
    } else {
        host
    };
    let site = slug(site);
    let mut id = if site.is_empty() {
        host
    } else {
        format!("{site}-{host}")
    };
    id.truncate(MAX_WORKER_ID_BASE);
    while id.ends_with('-') {
        id.pop();
    }
    id
}

/// The `n`-th candidate for a worker id: `base` for 1, `base-n` after.
#[must_use]
pub fn worker_id_candidate(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_owned()
    } else {
        format!("{base}-{n}")
    }
}

/// Whether `id` is an acceptable worker id: 1–[`MAX_WORKER_ID`] characters of `[a-z0-9-]`.
#[must_use]
pub fn valid_worker_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_WORKER_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Who a peer certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// From `urn:ims:worker:…`.
    pub worker_id: String,
    /// From `urn:ims:site:…`.
    pub site: String,
    /// The certificate's serial number, lower-case hex of its DER bytes.
    pub serial: String,
}

/// Why a peer certificate names no worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not an X.509 certificate.
    #[error("the client certificate cannot be parsed")]
    Malformed,
    /// No (or no valid) `urn:ims:worker:` SAN URI.
    #[error(
        "the client certificate names no worker (no urn:ims:worker: URI); enrol the edge again"
    )]
    NoWorker,
    /// No `urn:ims:site:` SAN URI.
    #[error("the client certificate names no site (no urn:ims:site: URI); enrol the edge again")]
    NoSite,
}

/// Reads the worker id, site and serial from a worker certificate (DER). The chain was verified
/// by TLS already; this only reads names.
///
/// # Errors
/// See [`IdentityError`].
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| IdentityError::Malformed)?;
    let serial = hex(cert.tbs_certificate.raw_serial());
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Malformed)?;
    let mut worker_id = None;
    let mut site = None;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name {
            if let Some(w) = uri.strip_prefix(WORKER_URI_PREFIX) {
                worker_id.get_or_insert_with(|| w.to_owned());
            } else if let Some(s) = uri.strip_prefix(SITE_URI_PREFIX) {
                site.get_or_insert_with(|| s.to_owned());
            }
        }
    }
    let worker_id = worker_id
        .filter(|w| valid_worker_id(w))
        .ok_or(IdentityError::NoWorker)?;
    let site = site
        .filter(|s| !s.is_empty())
        .ok_or(IdentityError::NoSite)?;
    Ok(PeerIdentity {
        worker_id,
        site,
        serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_are_lower_case_slugs() {
        assert_eq!(worker_id_base("Lab", "Edge-1"), "lab-edge-1");
        assert_eq!(
            worker_id_base("paris_dc.2", "edge01.example.org"),
            "paris-dc-2-edge01-example-org"
        );
        assert_eq!(worker_id_base("lab", "  "), "lab-edge");
        assert_eq!(worker_id_base("lab", "--ÉDGE--"), "lab-dge");
        let long = worker_id_base("s", &"x".repeat(500));
        assert_eq!(long.len(), MAX_WORKER_ID_BASE);
        assert!(valid_worker_id(&long));
        assert!(valid_worker_id(&worker_id_candidate(&long, 1_000_000)));
        assert_eq!(worker_id_candidate("lab-edge", 1), "lab-edge");
        assert_eq!(worker_id_candidate("lab-edge", 3), "lab-edge-3");
        for id in ["", "Lab", "a b", "a:b", &"a".repeat(MAX_WORKER_ID + 1)] {
            assert!(!valid_worker_id(id), "{id}");
        }
    }

    #[test]
    fn a_truncated_base_never_ends_in_a_dash() {
        let host = format!("{}-tail", "y".repeat(MAX_WORKER_ID_BASE - 3));
        let id = worker_id_base("ab", &host);
        assert!(!id.ends_with('-'), "{id}");
        assert!(id.len() <= MAX_WORKER_ID_BASE);
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        let f = fingerprint(b"abc");
        assert_eq!(
            f,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&f));
        assert!(!is_sha256_hex(&f[1..]));
        assert!(!is_sha256_hex(&format!("{}g", &f[1..])));
    }

    #[test]
    fn garbage_is_not_an_identity() {
        assert_eq!(peer_identity(b"nope"), Err(IdentityError::Malformed));
    }
}
