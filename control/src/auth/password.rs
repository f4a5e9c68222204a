//! Password hashing: argon2id with a random salt, stored as a PHC string.
//!
//! Each hash takes tens of milliseconds and about 19 MiB; the async helpers
//! ([`hash_password_async`], [`verify_password_async`]) run it off the async threads and at
//! most [`MAX_CONCURRENT_HASHES`] at a time, so a burst of logins cannot exhaust memory.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Hashing failed (only on an internal error of the hasher).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes `password` (argon2id, default parameters, random salt).
///
/// # Errors
/// The hasher failed.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the stored PHC `hash` (false for a malformed hash).
#[must_use]
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Most password hashes computed at once by the async helpers.
pub const MAX_CONCURRENT_HASHES: usize = 4;

static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// [`hash_password`] on a blocking thread, at most [`MAX_CONCURRENT_HASHES`] at once.
///
/// # Errors
/// The hasher failed.
pub async fn hash_password_async(password: String) -> Result<String, HashError> {
    let _permit = PERMITS
        .acquire()
        .await
        .map_err(|e| HashError(e.to_string()))?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| HashError(e.to_string()))?
}

/// [`verify_password`] on a blocking thread, at most [`MAX_CONCURRENT_HASHES`] at once
/// (false if the task fails).
pub async fn verify_password_async(password: String, hash: String) -> bool {
    let Ok(_permit) = PERMITS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &a));
        assert!(!verify_password("S3cret", &a));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[tokio::test]
    async fn async_helpers_round_trip_under_load() {
        let hash = hash_password_async("s3cret-pass".to_owned()).await.unwrap();
        // More concurrent checks than permits: all finish, each with the right answer.
        let checks = (0..MAX_CONCURRENT_HASHES * 2).map(|i| {
            let attempt = if i % 2 == 0 { "s3cret-pass" } else { "wrong" };
            let h = hash.clone();
            tokio::spawn(async move { (i, verify_password_async(attempt.to_owned(), h).await) })
        });
        for check in checks {
            let (i, ok) = check.await.unwrap();
            assert_eq!(ok, i % 2 == 0);
        }
    }
}
