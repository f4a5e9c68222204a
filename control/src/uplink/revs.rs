//! The change counters sessions watch, kept in the `settings` table so every replica on one
//! database sees them:
//!
//! * `config_rev`: bumped by database triggers on every insert, update and delete of
//!   machines, clusters, boot profiles, IP pools and sites, in the writing transaction (see
//!   `migrations/*/0002_uplink.sql`). It is also the generation of the snapshots built from
//!   the store.
//! * `revoke_rev`: bumped by [`registry::revoke`](super::registry::revoke).
//!
//! One [`spawn_watcher`] task per process polls both every [`POLL_INTERVAL`] and publishes them
//! on a `watch` channel, so a thousand sessions cost one query per interval, not a thousand.

use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use crate::db::{Db, StoreError};

/// The `settings` key of the configuration counter.
pub const CONFIG_REV_KEY: &str = "config_rev";
/// The `settings` key of the revocation counter.
pub const REVOKE_REV_KEY: &str = "revoke_rev";
/// How often the watcher reads the counters (a REST change reaches the edge within about
/// this plus a snapshot build).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The two counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revs {
    /// `config_rev`.
    pub config: u64,
    /// `revoke_rev`.
    pub revoke: u64,
}

fn parse(value: &str) -> u64 {
    value.trim().parse().unwrap_or(0)
}

/// Reads both counters (a missing or malformed one reads 0).
///
/// # Errors
/// The store failed.
pub async fn read(db: &Db) -> Result<Revs, StoreError> {
    let rows = sqlx::query("SELECT key, value FROM settings WHERE key IN ($1, $2)")
        .bind(CONFIG_REV_KEY)
        .bind(REVOKE_REV_KEY)
        .fetch_all(db.pool())
        .await?;
    let mut revs = Revs::default();
    for row in rows {
        let key: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        match key.as_str() {
            CONFIG_REV_KEY => revs.config = parse(&value),
            REVOKE_REV_KEY => revs.revoke = parse(&value),
            _ => {}
        }
    }
    Ok(revs)
}

/// Reads `config_rev` on `conn` (inside a snapshot's read transaction).
///
/// # Errors
/// The store failed.
pub async fn read_config_rev(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
        .bind(CONFIG_REV_KEY)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map_or(0, |(v,)| parse(&v)))
}

/// Adds one to the counter `key` (in the caller's write transaction).
///
/// # Errors
/// The store failed.
pub async fn bump(conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE settings SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = $1",
    )
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Starts the task that polls the counters every `interval` and publishes changes. It stops
/// when every receiver is dropped.
pub fn spawn_watcher(db: Db, interval: Duration) -> watch::Receiver<Revs> {
    let (tx, rx) = watch::channel(Revs::default());
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match read(&db).await {
                Ok(revs) => {
                    if failing {
                        tracing::info!("reading the change counters works again");
                        failing = false;
                    }
                    tx.send_if_modified(|current| {
                        let changed = *current != revs;
                        *current = revs;
                        changed
                    });
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            "cannot read the change counters ({e}); edges get no updates until \
                             the store answers"
                        );
                    }
                    failing = true;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = tx.closed() => break,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_counters_read_zero() {
        assert_eq!(parse("42"), 42);
        assert_eq!(parse(" 7 "), 7);
        assert_eq!(parse("x"), 0);
        assert_eq!(parse("-1"), 0);
    }
}
