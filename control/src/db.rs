//! The store's connection: one `sqlx::Any` pool over SQLite (a file in `--data-dir`, the
//! default) or PostgreSQL (`--database postgres://…`), the embedded migrations of each backend,
//! time helpers and the mapping of database errors to [`StoreError`].
//!
//! SQL is written once for both backends: `$1`-style placeholders (SQLite accepts them),
//! `BIGINT` Unix-millisecond times, `BIGINT` 0/1 booleans, and `RETURNING id` on inserts.
//! Write transactions start with [`Db::begin_write`], which takes SQLite's write lock up front
//! (`BEGIN IMMEDIATE`) so that concurrent writers wait on `busy_timeout` instead of failing;
//! on SQLite the writers of one process first queue for their turn in order ([`WriteTx`]), so a
//! burst of writes neither spins in SQLite's busy handler nor holds the connections readers need.
//! SQLite runs in WAL mode with `synchronous = FULL`: a write the API answered is on disk.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Transaction};

/// The database engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (single node).
    Sqlite,
    /// PostgreSQL (or a compatible database); several control planes may share it.
    Postgres,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL `{0}`: use `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`"
    )]
    UnsupportedUrl(String),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        /// The URL with any password removed.
        url: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// What a store operation can fail with. The REST layer maps these to 404, 409, 400 and 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique constraint would be violated.
    #[error("{message}")]
    Conflict {
        /// The API field that collides (`mac`, `ip`, `name`, …).
        field: String,
        /// What collided, for the user.
        message: String,
    },
    /// A foreign key names a row that does not exist (or a row is still referenced).
    #[error("{message}")]
    InvalidReference {
        /// The API field.
        field: String,
        /// What is wrong, for the user.
        message: String,
    },
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                let field = conflict_field(d.constraint(), d.message());
                return Self::Conflict {
                    message: format!("another record already has this {field}"),
                    field,
                };
            }
            if d.is_foreign_key_violation() {
                return Self::InvalidReference {
                    field: d
                        .constraint()
                        .map_or_else(|| "reference".to_owned(), fk_field),
                    message:
                        "the referenced record does not exist, or this record is still referenced"
                            .to_owned(),
                };
            }
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return Self::NotFound("record".to_owned());
        }
        Self::Database(e)
    }
}

/// The API field a unique violation is about. PostgreSQL names the constraint
/// (`machines_mac_key`); SQLite names the columns (`UNIQUE constraint failed: machines.mac`).
fn conflict_field(constraint: Option<&str>, message: &str) -> String {
    if let Some(c) = constraint {
        let c = c.strip_suffix("_key").unwrap_or(c);
        // `machines_mac` -> `mac`, `ip_pools_site_cidr` -> `cidr`, `leases_ip_mac` -> `mac`.
        return c.rsplit('_').next().unwrap_or(c).to_owned();
    }
    message
        .rsplit(['.', ' '])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("value")
        .to_owned()
}

fn fk_field(constraint: &str) -> String {
    // PostgreSQL's default FK names: `machines_cluster_id_fkey` -> `cluster_id`.
    let c = constraint.strip_suffix("_fkey").unwrap_or(constraint);
    for table in [
        "machines_",
        "clusters_",
        "boot_profiles_",
        "machine_metrics_",
        "machine_events_",
        "ip_pools_",
        "dhcp_configs_",
        "tftp_configs_",
        "workers_",
        "leases_",
        "o2ims_notifications_",
    ] {
        if let Some(rest) = c.strip_prefix(table) {
            return rest.to_owned();
        }
    }
    c.to_owned()
}

/// The embedded migrations of one backend.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_core_boxed::BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// `futures_core::BoxFuture` without the dependency.
mod futures_core_boxed {
    use std::future::Future;
    use std::pin::Pin;
    pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "uplink",
        include_str!("../migrations/sqlite/0002_uplink.sql"),
    ),
    (
        3,
        "heartbeat interval",
        include_str!("../migrations/sqlite/0003_heartbeat_interval.sql"),
    ),
    (
        4,
        "o2ims subscriptions",
        include_str!("../migrations/sqlite/0004_o2ims_subscriptions.sql"),
    ),
    (
        5,
        "o2ims alarms",
        include_str!("../migrations/sqlite/0005_o2ims_alarms.sql"),
    ),
    (
        6,
        "oauth clients",
        include_str!("../migrations/sqlite/0006_oauth_clients.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "uplink",
        include_str!("../migrations/postgres/0002_uplink.sql"),
    ),
    (
        3,
        "heartbeat interval",
        include_str!("../migrations/postgres/0003_heartbeat_interval.sql"),
    ),
    (
        4,
        "o2ims subscriptions",
        include_str!("../migrations/postgres/0004_o2ims_subscriptions.sql"),
    ),
    (
        5,
        "o2ims alarms",
        include_str!("../migrations/postgres/0005_o2ims_alarms.sql"),
    ),
    (
        6,
        "oauth clients",
        include_str!("../migrations/postgres/0006_oauth_clients.sql"),
    ),
];

/// The store's connection pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: writers of this process take turns here (first come, first served) before they
    /// take a connection and the file's write lock, so a burst of writes queues fairly instead
    /// of spinning in SQLite's busy handler while holding pool connections that readers need.
    write_turn: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A write transaction from [`Db::begin_write`]: use `&mut *tx` as the executor, then
/// [`WriteTx::commit`]; dropping it rolls back. On SQLite it also holds this process's write
/// turn until it ends.
#[derive(Debug)]
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits the transaction.
    ///
    /// # Errors
    /// The database refused the commit.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls the transaction back.
    ///
    /// # Errors
    /// The database refused the rollback.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// The SQLite file inside a data directory.
pub const SQLITE_FILE: &str = "ims-control.db";

impl Db {
    /// Opens (creating it if needed) the SQLite store `ims-control.db` in `dir`.
    ///
    /// # Errors
    /// The directory cannot be created or the file cannot be opened.
    pub async fn open_data_dir(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let url = format!("sqlite://{}?mode=rwc", dir.join(SQLITE_FILE).display());
        Self::connect(&url, 8).await
    }

    /// Connects to `sqlite://…` or `postgres://…` with at most `max_connections`.
    ///
    /// # Errors
    /// The URL is not supported or the database cannot be reached.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Postgres {
            // One direct connection first: the pool would retry until its acquire timeout and
            // then report only "pool timed out", hiding "connection refused" or a bad password.
            let conn = AnyConnection::connect(url)
                .await
                .map_err(|source| DbError::Connect {
                    url: redact_url(url),
                    source,
                })?;
            let _ = conn.close().await;
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|source| DbError::Connect {
                url: redact_url(url),
                source,
            })?;
        let write_turn =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Self {
            pool,
            backend,
            write_turn,
        })
    }

    /// Applies the pending migrations of this backend (safe to run from several processes at
    /// once: sqlx takes a database lock).
    ///
    /// # Errors
    /// A migration failed or the database holds a newer, unknown migration.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let source = match self.backend {
            Backend::Sqlite => Embedded(SQLITE_MIGRATIONS),
            Backend::Postgres => Embedded(POSTGRES_MIGRATIONS),
        };
        let migrator = Migrator::new(source).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for queries.
    #[must_use]
    pub const fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this is.
    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction (SQLite: `BEGIN IMMEDIATE`, so the write lock is taken first).
    ///
    /// # Errors
    /// The database is unreachable or stays locked past the busy timeout.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let turn = match &self.write_turn {
            Some(turn) => Some(Arc::clone(turn).lock_owned().await),
            None => None,
        };
        let statement = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(WriteTx {
            tx: self.pool.begin_with(statement).await?,
            _turn: turn,
        })
    }

    /// Checks that the database answers (`/readyz`).
    ///
    /// # Errors
    /// It does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A database URL with its password replaced by `***` (for messages and logs).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The current time in Unix milliseconds (the store's time format).
#[must_use]
#[allow(clippy::disallowed_methods)] // the control plane's one wall-clock read
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-11-26T05:12:00.123Z`),
/// the API's time format.
#[must_use]
pub fn format_ts(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an RFC 3339 time into Unix milliseconds.
#[must_use]
pub fn parse_ts(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_fields_from_both_backends() {
        assert_eq!(conflict_field(Some("machines_mac_key"), ""), "mac");
        assert_eq!(conflict_field(Some("ip_pools_site_cidr_key"), ""), "cidr");
        assert_eq!(
            conflict_field(None, "UNIQUE constraint failed: machines.ip"),
            "ip"
        );
        assert_eq!(fk_field("machines_cluster_id_fkey"), "cluster_id");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn times_round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_ts(&format_ts(ms)), Some(ms));
        assert!(format_ts(ms).ends_with(".123Z"));
    }
}
