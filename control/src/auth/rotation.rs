//! Rotation of the token signing key without logging anyone out early.
//!
//! The keys live in the store (`settings.jwt_keys`, newest first; see [`super::jwt`]). The
//! newest key signs; every key kept verifies. Rotating ([`rotate`], `ims-control rotate-key`)
//! puts a fresh key first. An older key stops signing when its successor is created, but
//! replicas keep signing with it until they next reload the keys ([`RELOAD_INTERVAL`]), and a
//! token lives at most the longer of the two token lifetimes; so a key is pruned only when
//! `successor.created + grace` has passed, with `grace = max(access_ttl, refresh_ttl) +
//! RELOAD_INTERVAL + CLOCK_SKEW` ([`grace`]). Until then its tokens keep working.
//!
//! With `serve --key-rotation PERIOD` ([`spawn_auto_rotation`]) a key older than `PERIOD` is
//! rotated the same way automatically.
//!
//! Every write is a compare-and-swap on the stored JSON (`UPDATE … WHERE value = <read>`), so
//! replicas rotating or pruning at once never lose a key. Replicas pick up changes through
//! [`KeyRing`]: a background task reloads every [`RELOAD_INTERVAL`] (and prunes), and a token
//! naming an unknown `kid` triggers an immediate reload (at most one per
//! [`MIN_RELOAD_SPACING_MS`]), so a token signed by a replica that rotated first verifies
//! everywhere at once.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use super::AuthSettings;
use super::jwt::{Claims, Keys, SETTINGS_KEY, StoredKey, TokenError, TokenKind, random_hex};
use crate::db::{Db, StoreError, now_ms};

/// How often each replica reloads (and prunes) the keys.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Allowance for clocks of replicas that disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Fewest milliseconds between two reloads triggered by unknown key ids (garbage tokens must
/// not turn into a database query each).
pub const MIN_RELOAD_SPACING_MS: i64 = 1_000;
/// Compare-and-swap attempts before a rotation gives up (another replica kept winning).
const CAS_ATTEMPTS: usize = 8;

/// How long a key keeps verifying after its successor was created.
#[must_use]
pub fn grace(settings: &AuthSettings) -> Duration {
    settings.access_ttl.max(settings.refresh_ttl) + RELOAD_INTERVAL + CLOCK_SKEW
}

/// What [`rotate`] or [`prune`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The key id that signs from now on.
    pub current: String,
    /// Every key id kept (the current one first).
    pub kept: Vec<String>,
    /// The key ids removed (every token they signed has expired).
    pub pruned: Vec<String>,
}

/// The signing keys a running server uses, reloadable from the store.
#[derive(Debug)]
pub struct KeyRing {
    keys: RwLock<Arc<Keys>>,
    /// `now_ms` of the last reload triggered by an unknown key id.
    last_miss_reload: Mutex<i64>,
}

impl KeyRing {
    /// A ring holding `keys`.
    #[must_use]
    pub fn new(keys: Keys) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            last_miss_reload: Mutex::new(i64::MIN),
        }
    }

    /// The keys now in use.
    #[must_use]
    pub fn current(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signs `claims` with the newest key.
    #[must_use]
    pub fn issue(&self, claims: &Claims) -> String {
        self.current().issue(claims)
    }

    /// Verifies with the keys in memory (see [`Keys::verify`]).
    ///
    /// # Errors
    /// See [`TokenError`].
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        self.current().verify(token, kind)
    }

    /// [`Self::verify`], but a token naming a key id this ring does not know reloads the keys
    /// from `db` first (another replica may have rotated).
    ///
    /// # Errors
    /// See [`TokenError`].
    pub async fn verify_or_reload(
        &self,
        db: &Db,
        token: &str,
        kind: TokenKind,
    ) -> Result<Claims, TokenError> {
        self.with_reload(db, token, |keys| keys.verify(token, kind))
            .await
    }

    /// [`Keys::verify_o2ims`] (a user's access token or an OAuth2 client token), reloading the
    /// keys first like [`Self::verify_or_reload`] when the token names an unknown key id.
    ///
    /// # Errors
    /// See [`TokenError`].
    pub async fn verify_o2ims_or_reload(&self, db: &Db, token: &str) -> Result<Claims, TokenError> {
        self.with_reload(db, token, |keys| keys.verify_o2ims(token))
            .await
    }

    async fn with_reload(
        &self,
        db: &Db,
        token: &str,
        verify: impl Fn(&Keys) -> Result<Claims, TokenError>,
    ) -> Result<Claims, TokenError> {
        let result = verify(&self.current());
        if result != Err(TokenError::Invalid) {
            return result;
        }
        let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else {
            return result;
        };
        if self.current().kids().contains(&kid.as_str()) || !self.may_reload_on_miss(now_ms()) {
            return result;
        }
        if let Err(e) = self.reload(db).await {
            tracing::warn!(error = %e, "reloading the token signing keys failed");
            return result;
        }
        verify(&self.current())
    }

    fn may_reload_on_miss(&self, now: i64) -> bool {
        let mut last = self
            .last_miss_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now.saturating_sub(*last) < MIN_RELOAD_SPACING_MS {
            return false;
        }
        *last = now;
        true
    }

    /// Replaces the keys in memory with those in the store.
    ///
    /// # Errors
    /// The store failed or holds malformed keys.
    pub async fn reload(&self, db: &Db) -> Result<(), StoreError> {
        let keys = Keys::load_or_create(db).await?;
        let before = self.current().kids().join(",");
        let after = keys.kids().join(",");
        if before != after {
            tracing::info!(kids = %after, "token signing keys reloaded");
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }
}

/// Starts the background task that prunes expired keys and reloads the ring every
/// [`RELOAD_INTERVAL`]; it stops when the handle is dropped.
#[must_use]
pub fn spawn_refresh(db: Db, auth: Arc<super::AuthState>) -> RefreshTask {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = prune(&db, now_ms(), grace(&auth.settings)).await {
                tracing::warn!(error = %e, "pruning expired token signing keys failed");
            }
            if let Err(e) = auth.keys.reload(&db).await {
                tracing::warn!(error = %e, "reloading the token signing keys failed");
            }
        }
    });
    RefreshTask(task)
}

/// The key refresh task of [`spawn_refresh`]; aborted on drop.
#[derive(Debug)]
pub struct RefreshTask(tokio::task::JoinHandle<()>);

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts automatic rotation (`serve --key-rotation PERIOD`): every [`RELOAD_INTERVAL`], a key
/// older than `period` is replaced ([`rotate_if_due`]) and the ring reloaded. Replicas doing
/// this at once rotate only once (the age is checked again inside the compare-and-swap).
#[must_use]
pub fn spawn_auto_rotation(db: Db, auth: Arc<super::AuthState>, period: Duration) -> RefreshTask {
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match rotate_if_due(&db, now_ms(), period, grace(&auth.settings)).await {
                Ok(Some(r)) => {
                    tracing::info!(kid = %r.current, kept = %r.kept.join(","), "token signing key rotated");
                    if let Err(e) = auth.keys.reload(&db).await {
                        tracing::warn!(error = %e, "reloading the token signing keys failed");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "rotating the token signing key failed"),
            }
        }
    });
    RefreshTask(task)
}

/// Rotates when the signing key was created `period` or longer before `now_ms` (and prunes as
/// [`rotate`] does); `None` when the key is younger.
///
/// # Errors
/// As [`rotate`].
pub async fn rotate_if_due(
    db: &Db,
    now_ms: i64,
    period: Duration,
    grace: Duration,
) -> Result<Option<Rotation>, StoreError> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    let mut rotated = false;
    let r = update(db, |stored| {
        rotated = stored
            .first()
            .is_none_or(|k| now_ms >= k.created_ms.saturating_add(period_ms));
        if rotated {
            stored.insert(
                0,
                StoredKey {
                    kid: random_hex(8),
                    secret_hex: random_hex(32),
                    created_ms: now_ms,
                },
            );
        }
        prune_list(stored, now_ms, grace)
    })
    .await?;
    Ok(rotated.then_some(r))
}

/// Puts a fresh signing key first and prunes every key whose tokens have all expired (its
/// successor was created more than `grace` before `now_ms`).
///
/// # Errors
/// The store failed, holds malformed keys, or other replicas kept changing the keys.
pub async fn rotate(db: &Db, now_ms: i64, grace: Duration) -> Result<Rotation, StoreError> {
    update(db, |stored| {
        stored.insert(
            0,
            StoredKey {
                kid: random_hex(8),
                secret_hex: random_hex(32),
                created_ms: now_ms,
            },
        );
        prune_list(stored, now_ms, grace)
    })
    .await
}

/// Prunes every key whose tokens have all expired, without rotating.
///
/// # Errors
/// As [`rotate`].
pub async fn prune(db: &Db, now_ms: i64, grace: Duration) -> Result<Rotation, StoreError> {
    update(db, |stored| prune_list(stored, now_ms, grace)).await
}

/// Removes from `stored` (newest first) every key but the first whose successor was created
/// more than `grace` before `now_ms`; returns the removed ids.
fn prune_list(stored: &mut Vec<StoredKey>, now_ms: i64, grace: Duration) -> Vec<String> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut pruned = Vec::new();
    let mut kept: Vec<StoredKey> = Vec::with_capacity(stored.len());
    for key in stored.drain(..) {
        // The successor of `key` is the last kept one (keys are newest first; a pruned key's
        // successors are never pruned before it, so the chain stays intact).
        let expired = kept
            .last()
            .is_some_and(|s| now_ms >= s.created_ms.saturating_add(grace_ms));
        if expired {
            pruned.push(key.kid);
        } else {
            kept.push(key);
        }
    }
    *stored = kept;
    pruned
}

/// Read-modify-write of the stored keys with compare-and-swap.
async fn update(
    db: &Db,
    mut change: impl FnMut(&mut Vec<StoredKey>) -> Vec<String>,
) -> Result<Rotation, StoreError> {
    // Creates the first key when there is none yet.
    Keys::load_or_create(db).await?;
    for _ in 0..CAS_ATTEMPTS {
        let (value,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(SETTINGS_KEY)
            .fetch_one(db.pool())
            .await?;
        let mut stored: Vec<StoredKey> = serde_json::from_str(&value).map_err(|e| malformed(&e))?;
        let pruned = change(&mut stored);
        let rotation = Rotation {
            current: stored.first().map(|k| k.kid.clone()).unwrap_or_default(),
            kept: stored.iter().map(|k| k.kid.clone()).collect(),
            pruned,
        };
        let json = serde_json::to_string(&stored).map_err(|e| malformed(&e))?;
        if json == value {
            return Ok(rotation);
        }
        let done = sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
            .bind(json)
            .bind(SETTINGS_KEY)
            .bind(&value)
            .execute(db.pool())
            .await?
            .rows_affected();
        if done == 1 {
            if !rotation.pruned.is_empty() {
                tracing::info!(pruned = %rotation.pruned.join(","), "expired token signing keys pruned");
            }
            return Ok(rotation);
        }
    }
    Err(StoreError::Conflict {
        field: SETTINGS_KEY.to_owned(),
        message: "the signing keys kept changing under this rotation; run it again".to_owned(),
    })
}

fn malformed(e: &serde_json::Error) -> StoreError {
    StoreError::InvalidReference {
        field: SETTINGS_KEY.to_owned(),
        message: format!("stored signing keys are malformed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, created_ms: i64) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            secret_hex: "00".into(),
            created_ms,
        }
    }

    fn kids(stored: &[StoredKey]) -> Vec<&str> {
        stored.iter().map(|k| k.kid.as_str()).collect()
    }

    #[test]
    fn a_key_is_pruned_only_a_grace_after_its_successor_was_created() {
        let grace = Duration::from_secs(100);
        // k3 (newest, created at 1000 s), k2 (500 s), k1 (0 s).
        let all = vec![key("k3", 1_000_000), key("k2", 500_000), key("k1", 0)];
        let mut s = all.clone();
        assert!(prune_list(&mut s, 599_999, grace).is_empty());
        assert_eq!(kids(&s), ["k3", "k2", "k1"]);
        let mut s = all.clone();
        assert_eq!(prune_list(&mut s, 600_000, grace), ["k1"]);
        assert_eq!(kids(&s), ["k3", "k2"]);
        let mut s = all;
        assert_eq!(prune_list(&mut s, 1_100_000, grace), ["k2", "k1"]);
        assert_eq!(kids(&s), ["k3"]);
        // The current key is never pruned, however old.
        assert!(prune_list(&mut s, i64::MAX, grace).is_empty());
        assert_eq!(kids(&s), ["k3"]);
    }

    #[test]
    fn grace_covers_the_longest_token_and_a_reload() {
        let settings = AuthSettings {
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(86_400),
        };
        assert_eq!(
            grace(&settings),
            Duration::from_secs(86_400) + RELOAD_INTERVAL + CLOCK_SKEW
        );
    }

    #[test]
    fn unknown_kid_reloads_are_spaced() {
        let ring = KeyRing::new(
            Keys::from_stored(&[StoredKey {
                kid: "k".into(),
                secret_hex: random_hex(32),
                created_ms: 0,
            }])
            .unwrap(),
        );
        assert!(ring.may_reload_on_miss(10_000));
        assert!(!ring.may_reload_on_miss(10_999));
        assert!(ring.may_reload_on_miss(11_000));
    }
}
