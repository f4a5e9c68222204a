//! Join tokens and CA fingerprints.
//!
//! `ims-control join-token --site NAME` prints `IMS1.<secret>.<fingerprint>`: 64 hex digits of
//! one-time secret, then the lower-case hex SHA-256 of the control plane's CA certificate (DER),
//! which the edge uses to authenticate the control plane before it has any certificate of its
//! own.

use std::fmt;

use sha2::{Digest, Sha256};

/// The token's version prefix.
const PREFIX: &str = "IMS1";
/// Hex digits of the secret and of the fingerprint.
const HEX_LEN: usize = 64;

/// A parsed join token. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The whole token as sent to the control plane (normalised to lower case).
    pub text: String,
    /// SHA-256 of the control plane's CA certificate.
    pub ca_fingerprint: [u8; 32],
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("text", &"<redacted>")
            .field("ca_fingerprint", &hex(&self.ca_fingerprint))
            .finish()
    }
}

/// Why a join token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the join token is not valid ({0}): it has the form IMS1.<64 hex digits>.<64 hex digits>; \
     copy the last line printed by `ims-control join-token --site NAME`"
)]
pub struct TokenError(String);

impl JoinToken {
    /// Parse `IMS1.<secret>.<fingerprint>` (surrounding whitespace ignored, hex in either case).
    ///
    /// # Errors
    /// [`TokenError`] saying which part is wrong.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('.').collect();
        let [prefix, secret, fingerprint] = parts[..] else {
            return Err(TokenError(format!(
                "{} part(s) separated by '.', expected 3",
                parts.len()
            )));
        };
        if prefix != PREFIX {
            return Err(TokenError(format!(
                "it starts with {:?}, expected {PREFIX}",
                prefix.chars().take(8).collect::<String>()
            )));
        }
        for (name, part) in [("secret", secret), ("CA fingerprint", fingerprint)] {
            if part.len() != HEX_LEN || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TokenError(format!(
                    "the {name} is not {HEX_LEN} hex digits"
                )));
            }
        }
        let ca_fingerprint = parse_fingerprint(fingerprint)
            .ok_or_else(|| TokenError("the CA fingerprint is not hex".to_owned()))?;
        Ok(Self {
            text: format!(
                "{PREFIX}.{}.{}",
                secret.to_ascii_lowercase(),
                fingerprint.to_ascii_lowercase()
            ),
            ca_fingerprint,
        })
    }
}

/// The fingerprint of a certificate: SHA-256 of its DER.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// 64 hex digits to 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    if text.len() != HEX_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_good_tokens_and_normalises_case() {
        let fp = fingerprint(b"a certificate");
        let token = format!(
            "  IMS1.{}.{}\n",
            SECRET.to_uppercase(),
            hex(&fp).to_uppercase()
        );
        let parsed = JoinToken::parse(&token).unwrap();
        assert_eq!(parsed.ca_fingerprint, fp);
        assert_eq!(parsed.text, format!("IMS1.{SECRET}.{}", hex(&fp)));
        let shown = format!("{parsed:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains(&hex(&fp)), "{shown}");
    }

    #[test]
    fn refuses_malformed_tokens_saying_what_is_wrong() {
        let fp = hex(&fingerprint(b"x"));
        let cases = [
            (String::new(), "1 part"),
            (format!("IMS1.{SECRET}"), "2 part"),
            (format!("IMS2.{SECRET}.{fp}"), "starts with \"IMS2\""),
            (format!("IMS1.{}.{fp}", &SECRET[1..]), "secret is not 64"),
            (
                format!("IMS1.{SECRET}.{}", &fp[2..]),
                "fingerprint is not 64",
            ),
            (
                format!("IMS1.{SECRET}.{}g", &fp[1..]),
                "fingerprint is not 64",
            ),
            (format!("IMS1.{SECRET}.{fp}.x"), "4 part"),
        ];
        for (text, needle) in cases {
            let err = JoinToken::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(err.contains("ims-control join-token"), "{err}");
        }
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        // SHA-256 of the empty string.
        assert_eq!(
            hex(&fingerprint(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let fp = fingerprint(b"abc");
        assert_eq!(parse_fingerprint(&hex(&fp)), Some(fp));
        assert_eq!(parse_fingerprint("zz"), None);
    }
}
