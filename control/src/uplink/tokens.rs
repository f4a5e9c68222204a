//! One-time join tokens: `IMS1.<secret>.<CA fingerprint>`, each part 64 lower-case hex digits.
//!
//! `ims-control join-token --site NAME [--ttl 1h]` makes one ([`issue`]). The store keeps only
//! the SHA-256 of the secret (hex of the digest of the secret's 64-character text), the site,
//! the expiry and, once used, when and by which worker (`join_tokens`). An enrolment consumes
//! the token inside its transaction ([`consume`]): a conditional `UPDATE … WHERE used_at IS
//! NULL AND expires_at > now`, so two enrolments racing with one token cannot both succeed,
//! on either backend.
//!
//! The fingerprint lets the edge verify the control plane's TLS certificate before it has a CA
//! to trust: it accepts only a chain holding the CA whose SHA-256 is that fingerprint.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::db::{Db, StoreError, format_ts};
use crate::store::sites;
use crate::uplink::identity::is_sha256_hex;

/// The token format's first part.
pub const TOKEN_PREFIX: &str = "IMS1";
/// Lifetime when `--ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Shortest lifetime accepted.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest lifetime accepted (30 days).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A join token. `Display` gives its text; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    secret: String,
    ca_fingerprint: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("secret", &"<redacted>")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}.{}.{}", self.secret, self.ca_fingerprint)
    }
}

/// A token's text is not `IMS1.<64 hex>.<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the join token is malformed ({0}): expected IMS1.<64 hex digits>.<64 hex digits> as the \
     last line printed by `ims-control join-token --site NAME`"
)]
pub struct TokenFormatError(&'static str);

impl FromStr for JoinToken {
    type Err = TokenFormatError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim().split('.');
        let (Some(prefix), Some(secret), Some(fp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenFormatError(
                "it does not have three parts separated by `.`",
            ));
        };
        if prefix != TOKEN_PREFIX {
            return Err(TokenFormatError("it does not start with IMS1"));
        }
        if !is_sha256_hex(secret) {
            return Err(TokenFormatError("the secret is not 64 hex digits"));
        }
        if !is_sha256_hex(fp) {
            return Err(TokenFormatError("the CA fingerprint is not 64 hex digits"));
        }
        Ok(Self {
            secret: secret.to_ascii_lowercase(),
            ca_fingerprint: fp.to_ascii_lowercase(),
        })
    }
}

impl JoinToken {
    /// A new token with a random 256-bit secret for the CA with `ca_fingerprint`.
    #[must_use]
    pub fn generate(ca_fingerprint: &str) -> Self {
        Self {
            secret: crate::auth::jwt::random_hex(32),
            ca_fingerprint: ca_fingerprint.to_ascii_lowercase(),
        }
    }

    /// The CA fingerprint the token carries.
    #[must_use]
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// What the store keeps: hex SHA-256 of the secret's text.
    #[must_use]
    pub fn secret_sha256(&self) -> String {
        crate::uplink::identity::hex(&Sha256::digest(self.secret.as_bytes()))
    }
}

/// Why a well-formed token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such token.
    #[error(
        "the join token is not known to this control plane; make one with `ims-control \
         join-token --site NAME`"
    )]
    Unknown,
    /// Past its expiry.
    #[error(
        "the join token expired at {}; make a new one with `ims-control join-token --site NAME`",
        format_ts(*.0)
    )]
    Expired(i64),
    /// Already used.
    #[error(
        "the join token was already used (at {}); tokens work once: make a new one with \
         `ims-control join-token --site NAME`",
        format_ts(*.0)
    )]
    Used(i64),
}

/// A token consumed by [`consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// `join_tokens.id`.
    pub token_id: i64,
    /// The site the token enrols into.
    pub site_id: i64,
}

/// Stores `token` for `site_id`, valid until `expires_at_ms`.
///
/// # Errors
/// The store failed.
pub async fn insert(
    conn: &mut AnyConnection,
    token: &JoinToken,
    site_id: i64,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO join_tokens (secret_sha256, site_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token.secret_sha256())
    .bind(site_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks `token` used at `now_ms` if it is known, unused and unexpired; run it in the
/// enrolment's write transaction (a rollback gives the token back).
///
/// # Errors
/// The store failed. A refused token is `Ok(Err(_))`.
pub async fn consume(
    conn: &mut AnyConnection,
    token: &JoinToken,
    now_ms: i64,
) -> Result<Result<Consumed, Refusal>, StoreError> {
    let hash = token.secret_sha256();
    let row = sqlx::query(
        "UPDATE join_tokens SET used_at = $1 \
         WHERE secret_sha256 = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING id, site_id",
    )
    .bind(now_ms)
    .bind(hash.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        return Ok(Ok(Consumed {
            token_id: row.try_get(0)?,
            site_id: row.try_get(1)?,
        }));
    }
    let row = sqlx::query("SELECT used_at, expires_at FROM join_tokens WHERE secret_sha256 = $1")
        .bind(hash.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Err(Refusal::Unknown));
    };
    let used_at: Option<i64> = row.try_get(0)?;
    let expires_at: i64 = row.try_get(1)?;
    Ok(Err(match used_at {
        Some(at) => Refusal::Used(at),
        None => Refusal::Expired(expires_at),
    }))
}

/// Records which worker a consumed token enrolled.
///
/// # Errors
/// The store failed.
pub async fn set_worker(
    conn: &mut AnyConnection,
    token_id: i64,
    worker_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE join_tokens SET worker_id = $1 WHERE id = $2")
        .bind(worker_id)
        .bind(token_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Checks a token lifetime: [`MIN_TTL`] to [`MAX_TTL`].
///
/// # Errors
/// What is wrong and what is accepted.
pub fn validate_ttl(ttl: Duration) -> Result<(), String> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(format!(
            "{} is not a usable token lifetime; give one from 1m to 30days",
            humantime::format_duration(ttl)
        ));
    }
    Ok(())
}

/// A token made by [`issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token (print it with `Display`).
    pub token: JoinToken,
    /// The site's id.
    pub site_id: i64,
    /// The site's name.
    pub site_name: String,
    /// Expiry (Unix ms).
    pub expires_at_ms: i64,
}

/// Why [`issue`] failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// No such site.
    #[error(
        "no site has the name or id `{0}`: create it first (POST /api/sites) or give an \
         existing one (GET /api/sites lists them)"
    )]
    NoSite(String),
    /// The lifetime is out of range.
    #[error("--ttl: {0}")]
    BadTtl(String),
    /// The number of tokens is out of range.
    #[error("--count: {0}")]
    BadCount(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes and stores a join token for the site `site` (name, case-insensitive, or id), valid
/// for `ttl` from `now_ms`, for the CA with `ca_fingerprint`.
///
/// # Errors
/// See [`IssueError`].
pub async fn issue(
    db: &Db,
    ca_fingerprint: &str,
    site: &str,
    ttl: Duration,
    now_ms: i64,
) -> Result<IssuedToken, IssueError> {
    let mut issued = issue_many(db, ca_fingerprint, site, ttl, now_ms, 1).await?;
    issued
        .pop()
        .ok_or_else(|| IssueError::BadCount("no token was made".into()))
}

/// Most tokens one [`issue_many`] call makes (`ims-control join-token --count`).
pub const MAX_COUNT: usize = 10_000;

/// Makes and stores `count` (1 to [`MAX_COUNT`]) join tokens for the site `site` in one
/// transaction, each working once, all like [`issue`] makes them.
///
/// # Errors
/// See [`IssueError`].
pub async fn issue_many(
    db: &Db,
    ca_fingerprint: &str,
    site: &str,
    ttl: Duration,
    now_ms: i64,
    count: usize,
) -> Result<Vec<IssuedToken>, IssueError> {
    validate_ttl(ttl).map_err(IssueError::BadTtl)?;
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(IssueError::BadCount(format!(
            "{count} tokens asked for: give 1 to {MAX_COUNT}"
        )));
    }
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let mut tx = db.begin_write().await?;
    let site_id = sites::find_id(&mut tx, site)
        .await?
        .ok_or_else(|| IssueError::NoSite(site.trim().to_owned()))?;
    let (site_name,): (String,) = sqlx::query_as("SELECT name FROM sites WHERE id = $1")
        .bind(site_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
    let mut issued = Vec::with_capacity(count);
    for _ in 0..count {
        let token = JoinToken::generate(ca_fingerprint);
        insert(&mut tx, &token, site_id, expires_at_ms, now_ms).await?;
        issued.push(IssuedToken {
            token,
            site_id,
            site_name: site_name.clone(),
            expires_at_ms,
        });
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let t = JoinToken::generate(FP);
        let text = t.to_string();
        assert!(text.starts_with("IMS1.") && text.ends_with(FP), "{text}");
        assert_eq!(text.len(), 4 + 1 + 64 + 1 + 64);
        let back: JoinToken = text.parse().unwrap();
        assert_eq!(back, t);
        assert_eq!(back.secret_sha256(), t.secret_sha256());
        assert_ne!(back.secret_sha256(), t.secret);
        let upper: JoinToken = format!("  {}\n", text.to_uppercase()).parse().unwrap();
        assert_eq!(upper, t, "hex case does not matter");
        assert!(!format!("{t:?}").contains(&t.secret));
        assert_ne!(JoinToken::generate(FP), t, "secrets are random");
    }

    #[test]
    fn malformed_tokens_say_what_is_expected() {
        let good = JoinToken::generate(FP).to_string();
        let cases = [
            String::new(),
            "IMS1".into(),
            good.replacen("IMS1", "IMS2", 1),
            format!("{good}.x"),
            good.replacen('.', "", 1),
            good[..good.len() - 1].to_owned(),
            format!("{}g", &good[..good.len() - 1]),
        ];
        for c in cases {
            let e = c.parse::<JoinToken>().unwrap_err();
            assert!(e.to_string().contains("IMS1.<64 hex digits>"), "{c}: {e}");
        }
    }

    #[test]
    fn ttl_bounds() {
        assert!(validate_ttl(DEFAULT_TTL).is_ok());
        assert!(validate_ttl(MIN_TTL).is_ok());
        assert!(validate_ttl(MAX_TTL).is_ok());
        let e = validate_ttl(Duration::from_secs(59)).unwrap_err();
        assert!(e.contains("1m to 30days"), "{e}");
        assert!(validate_ttl(MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn refusals_tell_what_to_do() {
        for r in [Refusal::Unknown, Refusal::Expired(0), Refusal::Used(0)] {
            assert!(r.to_string().contains("join-token --site"), "{r}");
        }
    }
}
