//! Store queries of `clusters`, and the small query helpers the cluster, machine and event
//! queries share: [`NameOrId`] references, dynamically built filter conditions with numbered
//! parameters, and decoding of stored enumeration names.
//!
//! A cluster's `machine_count` comes from a correlated `COUNT(*)` subquery over the
//! `machines_cluster_idx` index inside the one listing query (no query per cluster).

use std::str::FromStr;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::api::page::PageRequest;
use crate::db::{Db, StoreError};
use crate::model::{ClusterStatus, Health, UnknownVariant};

/// A reference to a row by id or by name (names match case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    /// `id = n`.
    Id(i64),
    /// `LOWER(name) = LOWER(s)`.
    Name(String),
}

impl NameOrId {
    /// Reads a query or body string: all digits is an id, anything else a name (trimmed).
    /// `None` for an empty string.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        if t.is_empty() {
            None
        } else if t.bytes().all(|b| b.is_ascii_digit()) {
            // More than 19 digits is no id of ours; keep it as a name that matches nothing.
            Some(
                t.parse()
                    .map_or_else(|_| Self::Name(t.to_owned()), Self::Id),
            )
        } else {
            Some(Self::Name(t.to_owned()))
        }
    }
}

/// A value bound to a query parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    /// A BIGINT.
    Int(i64),
    /// A TEXT.
    Text(String),
}

/// `AND`-ed filter conditions with their parameters, numbered `$1`, `$2`, … in order, so one
/// SQL text serves both backends and every value is bound, never spliced.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    /// Adds `cond`, whose single `?` becomes this parameter's `$n`.
    pub(crate) fn push(&mut self, cond: &str, bind: Bind) {
        self.binds.push(bind);
        let n = self.binds.len();
        self.sql.push(cond.replacen('?', &format!("${n}"), 1));
    }

    /// Adds `id_cond` or `name_cond` (each with one `?`) for a [`NameOrId`].
    pub(crate) fn push_ref(&mut self, r: &NameOrId, id_cond: &str, name_cond: &str) {
        match r {
            NameOrId::Id(id) => self.push(id_cond, Bind::Int(*id)),
            NameOrId::Name(name) => self.push(name_cond, Bind::Text(name.clone())),
        }
    }

    /// ` WHERE a AND b`, or nothing.
    pub(crate) fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }

    /// The number the next parameter after these gets.
    pub(crate) fn next_index(&self) -> usize {
        self.binds.len() + 1
    }

    /// Binds the parameters, in order, to `q`.
    pub(crate) fn bind<'q>(
        &self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for b in &self.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(s.clone()),
            };
        }
        q
    }
}

/// Runs `SELECT COUNT(*) FROM … WHERE …` and the page query `select … WHERE … ORDER BY …
/// LIMIT … OFFSET …` over the same conditions; returns the count and the decoded rows.
pub(crate) async fn count_and_page<T>(
    db: &Db,
    count_from: &str,
    select: &str,
    order_by: &str,
    conditions: &Conditions,
    page: PageRequest,
    decode: impl Fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<(i64, Vec<T>), StoreError> {
    let where_clause = conditions.where_clause();
    let count_sql = format!("SELECT COUNT(*) FROM {count_from}{where_clause}");
    let count: i64 = conditions
        .bind(sqlx::query(&count_sql))
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
    let n = conditions.next_index();
    let page_sql = format!(
        "{select}{where_clause} ORDER BY {order_by} LIMIT ${n} OFFSET ${}",
        n + 1
    );
    let rows = conditions
        .bind(sqlx::query(&page_sql))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(db.pool())
        .await?;
    let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((count, items))
}

/// Parses a stored enumeration name; a bad one is a decode error (the store holds only names
/// this crate wrote).
pub(crate) fn decode_enum<T: FromStr<Err = UnknownVariant>>(s: &str) -> Result<T, StoreError> {
    s.parse::<T>()
        .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

/// A cluster as stored, with its site's name and its machine count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `clusters.id`.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Operational status.
    pub status: ClusterStatus,
    /// Health.
    pub health: Health,
    /// The site it belongs to.
    pub site_id: Option<i64>,
    /// That site's name.
    pub site_name: Option<String>,
    /// How many machines it has.
    pub machine_count: i64,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// The writable fields of a cluster (already validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFields {
    /// Unique name (1–100 characters, trimmed).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Operational status.
    pub status: ClusterStatus,
    /// Health.
    pub health: Health,
    /// The site (must exist).
    pub site_id: Option<i64>,
}

impl From<&Cluster> for ClusterFields {
    fn from(c: &Cluster) -> Self {
        Self {
            name: c.name.clone(),
            description: c.description.clone(),
            status: c.status,
            health: c.health,
            site_id: c.site_id,
        }
    }
}

/// Which clusters a listing returns (all given conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterFilter {
    /// In this site.
    pub site: Option<NameOrId>,
    /// With this status.
    pub status: Option<ClusterStatus>,
    /// With this health.
    pub health: Option<Health>,
    /// With this name (case-insensitive).
    pub name: Option<String>,
}

const SELECT: &str = "SELECT c.id, c.name, c.description, c.status, c.health, c.site_id, \
     s.name, (SELECT COUNT(*) FROM machines mc WHERE mc.cluster_id = c.id), \
     c.created_at, c.updated_at \
     FROM clusters c LEFT JOIN sites s ON s.id = c.site_id";

fn decode(row: &AnyRow) -> Result<Cluster, StoreError> {
    Ok(Cluster {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        description: row.try_get(2)?,
        status: decode_enum(&row.try_get::<String, _>(3)?)?,
        health: decode_enum(&row.try_get::<String, _>(4)?)?,
        site_id: row.try_get(5)?,
        site_name: row.try_get(6)?,
        machine_count: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

/// One page of clusters matching `filter`, ordered by id, and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    db: &Db,
    filter: &ClusterFilter,
    page: PageRequest,
) -> Result<(i64, Vec<Cluster>), StoreError> {
    let mut c = Conditions::default();
    if let Some(site) = &filter.site {
        c.push_ref(
            site,
            "c.site_id = ?",
            "c.site_id IN (SELECT id FROM sites WHERE LOWER(name) = LOWER(?))",
        );
    }
    if let Some(status) = filter.status {
        c.push("c.status = ?", Bind::Text(status.as_str().to_owned()));
    }
    if let Some(health) = filter.health {
        c.push("c.health = ?", Bind::Text(health.as_str().to_owned()));
    }
    if let Some(name) = &filter.name {
        c.push(
            "LOWER(c.name) = LOWER(?)",
            Bind::Text(name.trim().to_owned()),
        );
    }
    count_and_page(db, "clusters c", SELECT, "c.id", &c, page, decode).await
}

/// The cluster `id`, if it exists.
///
/// # Errors
/// The store failed.
pub async fn get<'c, E: Executor<'c, Database = Any>>(
    e: E,
    id: i64,
) -> Result<Option<Cluster>, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(e)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The id of the cluster `r` names, if there is one.
///
/// # Errors
/// The store failed.
pub async fn find<'c, E: Executor<'c, Database = Any>>(
    e: E,
    r: &NameOrId,
) -> Result<Option<i64>, StoreError> {
    find_ref(e, "clusters", r).await
}

/// The id of the site `r` names, if there is one.
///
/// # Errors
/// The store failed.
pub async fn find_site<'c, E: Executor<'c, Database = Any>>(
    e: E,
    r: &NameOrId,
) -> Result<Option<i64>, StoreError> {
    find_ref(e, "sites", r).await
}

/// `SELECT id FROM <table>` by id or by case-insensitive name (the lowest id if names differ
/// only in case). `table` is a constant of this crate, never input.
pub(crate) async fn find_ref<'c, E: Executor<'c, Database = Any>>(
    e: E,
    table: &'static str,
    r: &NameOrId,
) -> Result<Option<i64>, StoreError> {
    let sql = match r {
        NameOrId::Id(_) => format!("SELECT id FROM {table} WHERE id = $1"),
        NameOrId::Name(_) => {
            format!("SELECT id FROM {table} WHERE LOWER(name) = LOWER($1) ORDER BY id LIMIT 1")
        }
    };
    let q = sqlx::query(&sql);
    let q = match r {
        NameOrId::Id(id) => q.bind(*id),
        NameOrId::Name(name) => q.bind(name.clone()),
    };
    let row = q.fetch_optional(e).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// 409 on `name` if another cluster (other than `except`) has `name`, compared
/// case-insensitively (the unique constraint is case-sensitive, lookups by name are not).
async fn check_name(conn: &mut AnyConnection, name: &str, except: i64) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT id FROM clusters WHERE LOWER(name) = LOWER($1) AND id <> $2")
        .bind(name.to_owned())
        .bind(except)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        let other: i64 = row.try_get(0)?;
        return Err(StoreError::Conflict {
            field: "name".to_owned(),
            message: format!(
                "cluster {other} is already named `{name}` (names are unique, ignoring case); \
                 choose another name"
            ),
        });
    }
    Ok(())
}

/// Inserts a cluster; returns its id.
///
/// # Errors
/// The name is taken (409 `name`), the site does not exist, or the store failed.
pub async fn create(
    conn: &mut AnyConnection,
    f: &ClusterFields,
    now: i64,
) -> Result<i64, StoreError> {
    check_name(conn, &f.name, 0).await?;
    let row = sqlx::query(
        "INSERT INTO clusters (name, description, status, health, site_id, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(f.name.clone())
    .bind(f.description.clone())
    .bind(f.status.as_str())
    .bind(f.health.as_str())
    .bind(f.site_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get(0)?)
}

/// Replaces cluster `id`'s writable fields.
///
/// # Errors
/// No such cluster (`NotFound`), the name is taken, or the store failed.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    f: &ClusterFields,
    now: i64,
) -> Result<(), StoreError> {
    check_name(conn, &f.name, id).await?;
    let done = sqlx::query(
        "UPDATE clusters SET name = $1, description = $2, status = $3, health = $4, \
         site_id = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(f.name.clone())
    .bind(f.description.clone())
    .bind(f.status.as_str())
    .bind(f.health.as_str())
    .bind(f.site_id)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("cluster {id}")));
    }
    Ok(())
}

/// Deletes cluster `id` and (by cascade) its machines, their metrics and events. Returns
/// whether it existed.
///
/// # Errors
/// The store failed.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<bool, StoreError> {
    // The foreign keys cascade; deleting the machines explicitly first keeps the result the
    // same on a SQLite connection opened without `PRAGMA foreign_keys`.
    sqlx::query("DELETE FROM machines WHERE cluster_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM clusters WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
