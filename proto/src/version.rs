//! Protocol versions, the QUIC ALPN tokens that carry the major version, and capabilities.
//!
//! A connection is only ever opened with an ALPN token naming one major version
//! (`ims-uplink/1`), so two peers that complete the TLS handshake already agree on the major
//! version. The [`Hello`](crate::Hello) / [`Welcome`](crate::Welcome) exchange then carries the
//! full [`ProtocolVersion`] (for logs and for features gated on a minor version) and each side's
//! capabilities, so optional features are negotiated rather than assumed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Major protocol version of this build. Peers with different majors cannot talk; a major bump
/// is the only time a message may be removed or change meaning.
pub const PROTOCOL_MAJOR: u16 = 1;

/// Minor protocol version of this build. Minor versions only add (optional fields, message
/// kinds, capabilities), so any two minors of one major interoperate.
///
/// * 1.1: the [`HttpStarted`](crate::HttpStarted) event kind.
pub const PROTOCOL_MINOR: u16 = 1;

/// Prefix of the uplink ALPN token; the major version follows (`ims-uplink/1`).
pub const ALPN_PREFIX: &str = "ims-uplink/";

/// Prefix of the enrolment ALPN token; the major version follows (`ims-enroll/1`).
pub const ENROLL_ALPN_PREFIX: &str = "ims-enroll/";

/// The uplink ALPN token of [`PROTOCOL_MAJOR`]. A test keeps it in step with the constant.
const ALPN_CURRENT: &[u8] = b"ims-uplink/1";

/// The enrolment ALPN token of [`PROTOCOL_MAJOR`].
const ENROLL_ALPN_CURRENT: &[u8] = b"ims-enroll/1";

/// The QUIC ALPN token of the uplink (mutual TLS) at this build's major version:
/// `b"ims-uplink/1"`.
///
/// During a migration to a new major the control plane offers several tokens (newest first,
/// see [`alpn_for`]) and the edge picks the one it speaks.
pub fn alpn() -> &'static [u8] {
    ALPN_CURRENT
}

/// The QUIC ALPN token of enrolment connections (server-authenticated TLS only, before the
/// edge has a certificate): `b"ims-enroll/1"`.
pub fn enroll_alpn() -> &'static [u8] {
    ENROLL_ALPN_CURRENT
}

/// The uplink ALPN token naming `major` (`ims-uplink/{major}`).
pub fn alpn_for(major: u16) -> Vec<u8> {
    format!("{ALPN_PREFIX}{major}").into_bytes()
}

/// The major version named by an uplink ALPN token, or `None` when `alpn` is not an uplink
/// token (`ims-uplink/` followed by a decimal number without leading zeros).
pub fn major_from_alpn(alpn: &[u8]) -> Option<u16> {
    let digits = alpn.strip_prefix(ALPN_PREFIX.as_bytes())?;
    let text = std::str::from_utf8(digits).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// A protocol version: `major.minor`.
///
/// Carried by [`Hello`](crate::Hello) and [`Welcome`](crate::Welcome). Ordered by major, then
/// minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProtocolVersion {
    /// Incompatible revisions; must be equal on both sides.
    pub major: u16,
    /// Additive revisions within a major.
    #[serde(default)]
    pub minor: u16,
}

impl ProtocolVersion {
    /// This build's version: [`PROTOCOL_MAJOR`].[`PROTOCOL_MINOR`].
    pub const CURRENT: Self = Self::new(PROTOCOL_MAJOR, PROTOCOL_MINOR);

    /// A version from its parts.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Whether a peer speaking `other` can talk to one speaking `self`: same major. Minors may
    /// differ (each side ignores what it does not know).
    pub fn is_compatible_with(self, other: Self) -> bool {
        self.major == other.major
    }
}

impl Default for ProtocolVersion {
    /// [`ProtocolVersion::CURRENT`].
    fn default() -> Self {
        Self::CURRENT
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A peer speaks an incompatible protocol version (a different major).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the peer speaks protocol {peer} but this build speaks {ours}: major versions differ, so \
     they cannot talk; upgrade the older side"
)]
pub struct VersionError {
    /// This build's version.
    pub ours: ProtocolVersion,
    /// The version the peer announced.
    pub peer: ProtocolVersion,
}

/// Decide whether this build can talk to a peer announcing `peer`: the majors must be equal.
///
/// # Errors
/// [`VersionError`] when the majors differ.
pub fn check_compatible(peer: ProtocolVersion) -> Result<(), VersionError> {
    if ProtocolVersion::CURRENT.is_compatible_with(peer) {
        Ok(())
    } else {
        Err(VersionError {
            ours: ProtocolVersion::CURRENT,
            peer,
        })
    }
}

/// Capability: the edge applies [`Delta`](crate::Delta) messages. Without it the control plane
/// sends every change as a full [`Snapshot`](crate::Snapshot).
pub const CAP_DELTA: &str = "delta";

/// The capabilities both sides announced, sorted and without duplicates.
///
/// Capability names are plain strings; a name one side does not know is simply not shared, so
/// announcing a new capability never breaks an older peer.
pub fn shared_capabilities<S: AsRef<str>, T: AsRef<str>>(ours: &[S], theirs: &[T]) -> Vec<String> {
    let theirs: std::collections::BTreeSet<&str> = theirs.iter().map(AsRef::as_ref).collect();
    let shared: std::collections::BTreeSet<&str> = ours
        .iter()
        .map(AsRef::as_ref)
        .filter(|cap| theirs.contains(cap))
        .collect();
    shared.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_names_the_major_version() {
        assert_eq!(alpn(), format!("ims-uplink/{PROTOCOL_MAJOR}").as_bytes());
        assert_eq!(
            enroll_alpn(),
            format!("{ENROLL_ALPN_PREFIX}{PROTOCOL_MAJOR}").as_bytes()
        );
        assert_eq!(alpn_for(PROTOCOL_MAJOR), alpn());
        assert_eq!(major_from_alpn(alpn()), Some(PROTOCOL_MAJOR));
        assert_eq!(major_from_alpn(b"ims-uplink/2"), Some(2));
        assert_eq!(major_from_alpn(b"ims-uplink/65535"), Some(65535));
        for bad in [
            &b"ims-uplink/"[..],
            b"ims-uplink/01",
            b"ims-uplink/+1",
            b"ims-uplink/65536",
            b"ims-uplink/1 ",
            b"ims-enroll/1",
            b"h3",
            b"",
        ] {
            assert_eq!(
                major_from_alpn(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn compatibility_is_same_major() {
        let current = ProtocolVersion::CURRENT;
        assert!(check_compatible(current).is_ok());
        assert!(check_compatible(ProtocolVersion::new(PROTOCOL_MAJOR, PROTOCOL_MINOR + 7)).is_ok());
        let newer = ProtocolVersion::new(PROTOCOL_MAJOR + 1, 0);
        let err = check_compatible(newer).unwrap_err();
        assert_eq!(err.peer, newer);
        assert!(err.to_string().contains("upgrade the older side"), "{err}");
        assert!(!current.is_compatible_with(ProtocolVersion::new(0, 9)));
        assert_eq!(
            current.to_string(),
            format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}")
        );
        assert_eq!(ProtocolVersion::default(), current);
    }

    #[test]
    fn shared_capabilities_intersect_sorted() {
        let ours = ["delta", "zeta", "alpha"];
        let theirs = vec![
            "zeta".to_owned(),
            "future".into(),
            "delta".into(),
            "delta".into(),
        ];
        assert_eq!(shared_capabilities(&ours, &theirs), ["delta", "zeta"]);
        assert!(shared_capabilities::<&str, String>(&[], &theirs).is_empty());
    }
}
