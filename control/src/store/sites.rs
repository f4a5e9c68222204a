//! Sites: the edge sites that pools, boot profiles, DHCP/TFTP configs, workers and clusters
//! belong to. A site is addressed by its id or by its name (names never look like ids).
//!
//! Also the small helpers the other site-side store modules share: `Filter` (WHERE clauses
//! with `$n` placeholders built at run time) and the RFC 3339 serialisers of stored times
//! (`ts`).

use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};
use utoipa::ToSchema;

use crate::api::page::PageRequest;
use crate::db::StoreError;

/// An edge site as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Site {
    /// Id.
    pub id: i64,
    /// Unique name (letters, digits, `.`, `_`, `-`; not all digits).
    pub name: String,
    /// Free text.
    pub description: String,
    /// The CIDRs of the site's IP pools (read-only).
    pub subnets: Vec<String>,
    /// The names of the site's boot profiles (read-only).
    pub boot_profiles: Vec<String>,
    /// Clusters at this site.
    pub cluster_count: i64,
    /// Edge workers at this site.
    pub worker_count: i64,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The writable fields of a site, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteValues {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// Serialisers of stored Unix-millisecond times as RFC 3339 strings.
pub(crate) mod ts {
    use serde::Serializer;

    /// `ms` as RFC 3339.
    pub(crate) fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::db::format_ts(*ms))
    }

    /// `ms` as RFC 3339, or null.
    pub(crate) fn serialize_opt<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&crate::db::format_ts(*ms)),
            None => s.serialize_none(),
        }
    }
}

/// A value bound to a query built at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
}

/// `WHERE` clauses whose `?` marks become `$n` placeholders numbered in the order added.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// Adds `clause`; every `?` in it stands for `arg`.
    pub(crate) fn push(&mut self, clause: &str, arg: Arg) {
        let n = self.args.len() + 1;
        self.clauses.push(clause.replace('?', &format!("${n}")));
        self.args.push(arg);
    }

    /// ` WHERE a AND b`, or nothing.
    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// ` LIMIT $n OFFSET $n+1` for the next two placeholders (bind with [`Self::bind_page`]).
    pub(crate) fn page_sql(&self) -> String {
        let n = self.args.len() + 1;
        format!(" LIMIT ${n} OFFSET ${}", n + 1)
    }

    /// Binds the arguments, in order.
    pub(crate) fn bind<'q>(
        &'q self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for arg in &self.args {
            q = match arg {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(s) => q.bind(s.as_str()),
            };
        }
        q
    }

    /// Binds the arguments and then the page's limit and offset.
    pub(crate) fn bind_page<'q>(
        &'q self,
        q: Query<'q, Any, AnyArguments<'q>>,
        page: PageRequest,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        self.bind(q).bind(page.limit()).bind(page.offset())
    }

    /// `SELECT COUNT(*) FROM {from}` with these clauses.
    pub(crate) async fn count(
        &self,
        conn: &mut AnyConnection,
        from: &str,
    ) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {from}{}", self.where_sql());
        let row = self.bind(sqlx::query(&sql)).fetch_one(&mut *conn).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }
}

/// Maps a database error of a write that references a site: a foreign-key failure can only be
/// the site (deleted meanwhile), so it names the API field `site`.
pub(crate) fn site_fk(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::InvalidReference { message, .. } => StoreError::InvalidReference {
            field: "site".to_owned(),
            message,
        },
        other => other,
    }
}

/// Takes the advisory lock `key` until the transaction ends (PostgreSQL), so that a
/// check-then-write (name taken? pools overlap?) cannot interleave with a concurrent one.
/// SQLite needs nothing: its write transactions (`BEGIN IMMEDIATE`) are serialised already.
///
/// # Errors
/// The store failed.
pub(crate) async fn xact_lock(conn: &mut AnyConnection, key: i64) -> Result<(), StoreError> {
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Advisory-lock key of site-name checks.
const SITE_NAME_LOCK: i64 = 0x5349_5445_0000_0001;

/// Whether `key` reads as a row id (all ASCII digits).
#[must_use]
pub fn is_id(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit())
}

/// The id of the site `key` names: an id (all digits) or a name (case-insensitive).
///
/// # Errors
/// The store failed.
pub async fn find_id(conn: &mut AnyConnection, key: &str) -> Result<Option<i64>, StoreError> {
    let key = key.trim();
    let row = if is_id(key) {
        let Ok(id) = key.parse::<i64>() else {
            return Ok(None);
        };
        sqlx::query("SELECT id FROM sites WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    } else {
        sqlx::query("SELECT id FROM sites WHERE LOWER(name) = LOWER($1)")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
    };
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

/// Like [`find_id`], but a missing site is an invalid reference on `field` (a 400 naming it).
///
/// # Errors
/// No such site, or the store failed.
pub async fn require_id(
    conn: &mut AnyConnection,
    key: &str,
    field: &str,
) -> Result<i64, StoreError> {
    find_id(conn, key)
        .await?
        .ok_or_else(|| StoreError::InvalidReference {
            field: field.to_owned(),
            message: format!(
                "no site has the id or name `{key}`: create it with POST /api/sites or give an \
                 existing one"
            ),
        })
}

const SITE_SELECT: &str = "SELECT s.id, s.name, s.description, s.created_at, s.updated_at, \
     (SELECT COUNT(*) FROM clusters c WHERE c.site_id = s.id) AS cluster_count, \
     (SELECT COUNT(*) FROM workers w WHERE w.site_id = s.id) AS worker_count \
     FROM sites s";

fn site_from_row(row: &AnyRow) -> Result<Site, sqlx::Error> {
    Ok(Site {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        subnets: Vec::new(),
        boot_profiles: Vec::new(),
        cluster_count: row.try_get("cluster_count")?,
        worker_count: row.try_get("worker_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Fills `subnets` and `boot_profiles` of `sites` (sorted by id).
async fn attach_children(conn: &mut AnyConnection, sites: &mut [Site]) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) = (sites.first().map(|s| s.id), sites.last().map(|s| s.id)) else {
        return Ok(());
    };
    let pools = sqlx::query(
        "SELECT site_id, cidr FROM ip_pools WHERE site_id BETWEEN $1 AND $2 ORDER BY id",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *conn)
    .await?;
    for row in pools {
        let site_id: i64 = row.try_get(0)?;
        if let Ok(i) = sites.binary_search_by_key(&site_id, |s| s.id) {
            sites[i].subnets.push(row.try_get(1)?);
        }
    }
    let profiles = sqlx::query(
        "SELECT site_id, name FROM boot_profiles WHERE site_id BETWEEN $1 AND $2 ORDER BY name",
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *conn)
    .await?;
    for row in profiles {
        let site_id: i64 = row.try_get(0)?;
        if let Ok(i) = sites.binary_search_by_key(&site_id, |s| s.id) {
            sites[i].boot_profiles.push(row.try_get(1)?);
        }
    }
    Ok(())
}

/// The site `id`.
///
/// # Errors
/// [`StoreError::NotFound`] when there is none; the store failed.
pub async fn get(conn: &mut AnyConnection, id: i64) -> Result<Site, StoreError> {
    let row = sqlx::query(&format!("{SITE_SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {id}")))?;
    let mut sites = [site_from_row(&row)?];
    attach_children(conn, &mut sites).await?;
    let [site] = sites;
    Ok(site)
}

/// One page of sites ordered by id, and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    conn: &mut AnyConnection,
    page: PageRequest,
) -> Result<(i64, Vec<Site>), StoreError> {
    let filter = Filter::default();
    let count = filter.count(conn, "sites s").await?;
    let sql = format!(
        "{SITE_SELECT}{} ORDER BY s.id{}",
        filter.where_sql(),
        filter.page_sql()
    );
    let rows = filter
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    let mut sites = rows
        .iter()
        .map(site_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    attach_children(conn, &mut sites).await?;
    Ok((count, sites))
}

/// 409 on `name` when another site (not `except`) has `name` in any case.
async fn check_name_free(
    conn: &mut AnyConnection,
    name: &str,
    except: i64,
) -> Result<(), StoreError> {
    xact_lock(conn, SITE_NAME_LOCK).await?;
    let taken = sqlx::query("SELECT id FROM sites WHERE LOWER(name) = LOWER($1) AND id <> $2")
        .bind(name)
        .bind(except)
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict {
            field: "name".to_owned(),
            message: format!(
                "a site named `{name}` already exists (names are compared ignoring case): \
                 choose another name"
            ),
        });
    }
    Ok(())
}

/// Creates a site (call inside a write transaction).
///
/// # Errors
/// The name is taken (409 `name`); the store failed.
pub async fn create(
    conn: &mut AnyConnection,
    values: &SiteValues,
    now_ms: i64,
) -> Result<Site, StoreError> {
    check_name_free(conn, &values.name, 0).await?;
    let row = sqlx::query(
        "INSERT INTO sites (name, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(values.name.as_str())
    .bind(values.description.as_str())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    get(conn, row.try_get(0)?).await
}

/// Replaces the writable fields of site `id` (call inside a write transaction).
///
/// # Errors
/// No such site (404); the name is taken (409 `name`); the store failed.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    values: &SiteValues,
    now_ms: i64,
) -> Result<Site, StoreError> {
    check_name_free(conn, &values.name, id).await?;
    let done =
        sqlx::query("UPDATE sites SET name = $1, description = $2, updated_at = $3 WHERE id = $4")
            .bind(values.name.as_str())
            .bind(values.description.as_str())
            .bind(now_ms)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("site {id}")));
    }
    get(conn, id).await
}

/// Deletes site `id`. Its IP pools, boot profiles and DHCP/TFTP configs go with it; its
/// clusters, workers and leases stay, without a site.
///
/// # Errors
/// No such site (404); the store failed.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM sites WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("site {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_numbers_placeholders_in_order() {
        let mut f = Filter::default();
        assert_eq!(f.where_sql(), "");
        f.push("a = ?", Arg::Int(1));
        f.push("(c = ? OR d = ?)", Arg::Text("x".into()));
        assert_eq!(f.where_sql(), " WHERE a = $1 AND (c = $2 OR d = $2)");
        assert_eq!(f.page_sql(), " LIMIT $3 OFFSET $4");
    }

    #[test]
    fn ids_are_all_digits() {
        assert!(is_id("12"));
        assert!(!is_id(""));
        assert!(!is_id("12a"));
        assert!(!is_id("edge-1"));
    }
}
