//! The edge's identity on disk: `<data_dir>/uplink/` (mode 0700) holding `ca.pem` (the
//! control plane's CA), `cert.pem` (this edge's certificate), `key.pem` (its private key,
//! PKCS#8, mode 0600) and `identity.json` (`{worker_id, site, enrolled_at}`).
//!
//! Every file is written atomically: a temporary file in the same directory, flushed to disk,
//! renamed over the old one, then the directory flushed; `identity.json` goes last, so its
//! presence means the other three are complete.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// Directory under `data_dir` holding the identity.
pub const UPLINK_DIR: &str = "uplink";
const CA_FILE: &str = "ca.pem";
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
const IDENTITY_FILE: &str = "identity.json";

/// What `identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The worker id the certificate names.
    pub worker_id: String,
    /// The site the certificate names.
    pub site: String,
    /// When the edge was enrolled (RFC 3339).
    pub enrolled_at: String,
}

/// Everything the uplink needs to authenticate.
#[derive(Debug)]
pub struct Identity {
    /// `identity.json`.
    pub info: IdentityInfo,
    /// The control plane's CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// This edge's certificate, DER.
    pub cert_der: Vec<u8>,
    /// This edge's private key.
    pub key: PrivateKeyDer<'static>,
}

/// The identity is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Never enrolled (no `identity.json`).
    #[error(
        "[control] is configured but this edge is not enrolled ({} does not exist): run \
         `netbootd enroll --config FILE --control HOST:PORT --token TOKEN` first, with a token \
         from `ims-control join-token --site NAME`",
        .0.display()
    )]
    NotEnrolled(PathBuf),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something unusable.
    #[error("{}: {reason}; enrol again with `netbootd enroll --force`", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `<data_dir>/uplink`.
pub fn uplink_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(UPLINK_DIR)
}

/// Whether `data_dir` holds an identity (its `identity.json` exists).
pub fn is_enrolled(data_dir: &Path) -> bool {
    uplink_dir(data_dir).join(IDENTITY_FILE).is_file()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read the identity from `data_dir`.
///
/// # Errors
/// [`IdentityError::NotEnrolled`] when there is none; otherwise the file at fault.
pub fn load(data_dir: &Path) -> Result<Identity, IdentityError> {
    let dir = uplink_dir(data_dir);
    let info_path = dir.join(IDENTITY_FILE);
    let text = match fs::read_to_string(&info_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::NotEnrolled(info_path));
        }
        Err(e) => return Err(io_err(&info_path)(e)),
    };
    let info: IdentityInfo = serde_json::from_str(&text).map_err(|e| IdentityError::Invalid {
        path: info_path.clone(),
        reason: format!("not valid JSON with worker_id, site, enrolled_at: {e}"),
    })?;
    let cert = |name: &str| -> Result<Vec<u8>, IdentityError> {
        let path = dir.join(name);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        CertificateDer::from_pem_slice(&bytes)
            .map(|c| c.to_vec())
            .map_err(|e| IdentityError::Invalid {
                path,
                reason: format!("no PEM certificate: {e}"),
            })
    };
    let ca_der = cert(CA_FILE)?;
    let cert_der = cert(CERT_FILE)?;
    let key_path = dir.join(KEY_FILE);
    let key_bytes = fs::read(&key_path).map_err(io_err(&key_path))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| IdentityError::Invalid {
        path: key_path,
        reason: format!("no PEM private key: {e}"),
    })?;
    Ok(Identity {
        info,
        ca_der,
        cert_der,
        key,
    })
}

/// Write an identity into `data_dir` (see the module docs). `key_pem` is the PKCS#8 PEM of
/// the private key.
///
/// # Errors
/// The file or directory that could not be written.
pub fn save(
    data_dir: &Path,
    info: &IdentityInfo,
    ca_der: &[u8],
    cert_der: &[u8],
    key_pem: &str,
) -> Result<PathBuf, IdentityError> {
    let dir = uplink_dir(data_dir);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_err(&dir))?;
    // An existing directory keeps its mode: make sure it is private.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
    write_atomic(&dir, KEY_FILE, key_pem.as_bytes(), 0o600)?;
    write_atomic(&dir, CA_FILE, pem("CERTIFICATE", ca_der).as_bytes(), 0o644)?;
    write_atomic(
        &dir,
        CERT_FILE,
        pem("CERTIFICATE", cert_der).as_bytes(),
        0o644,
    )?;
    let json = serde_json::to_vec_pretty(info).map_err(|e| IdentityError::Invalid {
        path: dir.join(IDENTITY_FILE),
        reason: e.to_string(),
    })?;
    write_atomic(&dir, IDENTITY_FILE, &json, 0o644)?;
    Ok(dir)
}

/// Write `name` in `dir` through a temporary file and a rename, durably.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// PEM: base64 of `der` in 64-character lines between BEGIN/END `label` lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lmdb::tests::TempDir;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn identity_round_trips_with_private_modes() {
        let dir = TempDir::new("identity");
        assert!(!is_enrolled(dir.path()));
        assert!(matches!(
            load(dir.path()),
            Err(IdentityError::NotEnrolled(_))
        ));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = rcgen::CertificateParams::new(vec!["edge".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let info = IdentityInfo {
            worker_id: "site-a-edge1".into(),
            site: "site-a".into(),
            enrolled_at: "2025-01-01T00:00:00Z".into(),
        };
        let written = save(
            dir.path(),
            &info,
            cert.der(),
            cert.der(),
            &key.serialize_pem(),
        )
        .expect("save");
        assert!(is_enrolled(dir.path()));
        let mode = |name: &str| {
            fs::metadata(written.join(name))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(
            fs::metadata(&written).expect("dir").permissions().mode() & 0o777,
            0o700
        );
        let loaded = load(dir.path()).expect("load");
        assert_eq!(loaded.info, info);
        assert_eq!(loaded.cert_der, cert.der().to_vec());
        assert_eq!(loaded.ca_der, cert.der().to_vec());
        assert_eq!(loaded.key.secret_der(), key.serialized_der());
        // No temporary files are left behind; a damaged file is named.
        let leftovers: Vec<_> = fs::read_dir(&written)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        fs::write(written.join(CERT_FILE), "garbage").expect("write");
        match load(dir.path()) {
            Err(e @ IdentityError::Invalid { .. }) => {
                assert!(e.to_string().contains("cert.pem"), "{e}");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}
