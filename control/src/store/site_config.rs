//! A site's DHCP and TFTP server settings: at most one [`DhcpConfig`] and one [`TftpConfig`] per
//! site. Both tables are handled by the same generic functions over [`SiteConfig`], which
//! knows each table's columns, how to read a row and how to bind validated values.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};
use utoipa::ToSchema;

use crate::api::page::PageRequest;
use crate::db::StoreError;
use crate::model::UnknownVariant;
use crate::store::sites::{Arg, Filter, ts};

/// How the site's DHCP server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// A full DHCP server: hands out addresses and boot files (the default).
    Server,
    /// ProxyDHCP: another server hands out addresses; this one adds only the boot file.
    Proxy,
}

impl DhcpMode {
    /// The accepted names, for messages.
    pub const EXPECTED: &'static str = "server, proxy";

    /// The stored and serialised name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Proxy => "proxy",
        }
    }
}

impl fmt::Display for DhcpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DhcpMode {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            t if t.eq_ignore_ascii_case("server") => Ok(Self::Server),
            t if t.eq_ignore_ascii_case("proxy") => Ok(Self::Proxy),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: Self::EXPECTED,
            }),
        }
    }
}

/// A site's DHCP server settings as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DhcpConfig {
    /// Id.
    pub id: i64,
    /// The site's id.
    pub site: i64,
    /// The site's name.
    pub site_name: String,
    /// Whether the site serves DHCP.
    pub enabled: bool,
    /// `server` or `proxy`.
    pub mode: DhcpMode,
    /// IPv4 address the server binds (`0.0.0.0`: every address).
    pub bind_address: String,
    /// Interface the server binds (empty: every interface).
    pub bind_interface: String,
    /// TFTP server announced to clients (null: the edge itself).
    pub tftp_ip: Option<String>,
    /// Its port.
    pub tftp_port: i64,
    /// Lease time in seconds.
    pub lease_time: i64,
    /// Whether unknown MACs get an address (discovery mode).
    pub allow_unknown: bool,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The writable fields of a DHCP config (besides the site), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpValues {
    /// Enabled.
    pub enabled: bool,
    /// Mode.
    pub mode: DhcpMode,
    /// Bind address.
    pub bind_address: Ipv4Addr,
    /// Bind interface (may be empty).
    pub bind_interface: String,
    /// TFTP server.
    pub tftp_ip: Option<Ipv4Addr>,
    /// TFTP port, 1–65535.
    pub tftp_port: i64,
    /// Lease time, seconds.
    pub lease_time: i64,
    /// Discovery mode.
    pub allow_unknown: bool,
}

/// A site's TFTP server settings as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TftpConfig {
    /// Id.
    pub id: i64,
    /// The site's id.
    pub site: i64,
    /// The site's name.
    pub site_name: String,
    /// Whether the site serves TFTP.
    pub enabled: bool,
    /// IPv4 address the server binds.
    pub bind_address: String,
    /// UDP port.
    pub bind_port: i64,
    /// Largest block size offered (RFC 2348).
    pub block_size: i64,
    /// Largest window size offered (RFC 7440).
    pub max_windowsize: i64,
    /// Concurrent transfers at most.
    pub max_transfers: i64,
    /// Directory the boot files are served from.
    pub root_directory: String,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The writable fields of a TFTP config (besides the site), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpValues {
    /// Enabled.
    pub enabled: bool,
    /// Bind address.
    pub bind_address: Ipv4Addr,
    /// Port, 1–65535.
    pub bind_port: i64,
    /// Block size, 8–65464.
    pub block_size: i64,
    /// Window size, 1–64.
    pub max_windowsize: i64,
    /// Transfers, 1–16384.
    pub max_transfers: i64,
    /// Absolute path without `..`.
    pub root_directory: String,
}

/// One kind of per-site config: its table and how its rows and values map to columns.
pub trait SiteConfig: Sized {
    /// Validated writable values (without the site).
    type Values: Sync;
    /// The table.
    const TABLE: &'static str;
    /// What it is called in messages (`DHCP config`).
    const WHAT: &'static str;
    /// Where the API serves it (`/api/dhcp-config`).
    const PATH: &'static str;
    /// The writable columns besides `site_id`, in the order [`Self::bind`] binds them.
    const COLUMNS: &'static [&'static str];

    /// Reads a row selected by this module (with `site_name`).
    ///
    /// # Errors
    /// A column is missing or has the wrong type.
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;

    /// Binds `values` in [`Self::COLUMNS`] order.
    fn bind<'q>(
        values: &'q Self::Values,
        q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>>;
}

fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

impl SiteConfig for DhcpConfig {
    type Values = DhcpValues;
    const TABLE: &'static str = "dhcp_configs";
    const WHAT: &'static str = "DHCP config";
    const PATH: &'static str = "/api/dhcp-config";
    const COLUMNS: &'static [&'static str] = &[
        "enabled",
        "mode",
        "bind_address",
        "bind_interface",
        "tftp_ip",
        "tftp_port",
        "lease_time",
        "allow_unknown",
    ];

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let mode: String = row.try_get("mode")?;
        Ok(Self {
            id: row.try_get("id")?,
            site: row.try_get("site_id")?,
            site_name: row.try_get("site_name")?,
            enabled: flag(row, "enabled")?,
            mode: mode.parse().unwrap_or(DhcpMode::Server),
            bind_address: row.try_get("bind_address")?,
            bind_interface: row.try_get("bind_interface")?,
            tftp_ip: row.try_get("tftp_ip")?,
            tftp_port: row.try_get("tftp_port")?,
            lease_time: row.try_get("lease_time")?,
            allow_unknown: flag(row, "allow_unknown")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn bind<'q>(
        v: &'q DhcpValues,
        q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        q.bind(i64::from(v.enabled))
            .bind(v.mode.as_str())
            .bind(v.bind_address.to_string())
            .bind(v.bind_interface.as_str())
            .bind(v.tftp_ip.map(|a| a.to_string()))
            .bind(v.tftp_port)
            .bind(v.lease_time)
            .bind(i64::from(v.allow_unknown))
    }
}

impl SiteConfig for TftpConfig {
    type Values = TftpValues;
    const TABLE: &'static str = "tftp_configs";
    const WHAT: &'static str = "TFTP config";
    const PATH: &'static str = "/api/tftp-config";
    const COLUMNS: &'static [&'static str] = &[
        "enabled",
        "bind_address",
        "bind_port",
        "block_size",
        "max_windowsize",
        "max_transfers",
        "root_directory",
    ];

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            site: row.try_get("site_id")?,
            site_name: row.try_get("site_name")?,
            enabled: flag(row, "enabled")?,
            bind_address: row.try_get("bind_address")?,
            bind_port: row.try_get("bind_port")?,
            block_size: row.try_get("block_size")?,
            max_windowsize: row.try_get("max_windowsize")?,
            max_transfers: row.try_get("max_transfers")?,
            root_directory: row.try_get("root_directory")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn bind<'q>(
        v: &'q TftpValues,
        q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        q.bind(i64::from(v.enabled))
            .bind(v.bind_address.to_string())
            .bind(v.bind_port)
            .bind(v.block_size)
            .bind(v.max_windowsize)
            .bind(v.max_transfers)
            .bind(v.root_directory.as_str())
    }
}

fn select<C: SiteConfig>() -> String {
    let columns: Vec<String> = C::COLUMNS.iter().map(|c| format!("t.{c}")).collect();
    format!(
        "SELECT t.id, t.site_id, s.name AS site_name, {}, t.created_at, t.updated_at \
         FROM {} t JOIN sites s ON s.id = t.site_id",
        columns.join(", "),
        C::TABLE
    )
}

fn not_found<C: SiteConfig>(id: i64) -> StoreError {
    StoreError::NotFound(format!("{} {id}", C::WHAT))
}

/// The config `id`.
///
/// # Errors
/// [`StoreError::NotFound`]; the store failed.
pub async fn get<C: SiteConfig>(conn: &mut AnyConnection, id: i64) -> Result<C, StoreError> {
    let row = sqlx::query(&format!("{} WHERE t.id = $1", select::<C>()))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found::<C>(id))?;
    Ok(C::from_row(&row)?)
}

/// The config of site `site_id`, if it has one.
///
/// # Errors
/// The store failed.
pub async fn for_site<C: SiteConfig>(
    conn: &mut AnyConnection,
    site_id: i64,
) -> Result<Option<C>, StoreError> {
    let row = sqlx::query(&format!("{} WHERE t.site_id = $1", select::<C>()))
        .bind(site_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(C::from_row).transpose()?)
}

/// One page of configs ordered by id (only `site`'s when given), and the total count.
///
/// # Errors
/// The store failed.
pub async fn list<C: SiteConfig>(
    conn: &mut AnyConnection,
    site: Option<i64>,
    page: PageRequest,
) -> Result<(i64, Vec<C>), StoreError> {
    let mut filter = Filter::default();
    if let Some(site) = site {
        filter.push("t.site_id = ?", Arg::Int(site));
    }
    let count = filter.count(conn, &format!("{} t", C::TABLE)).await?;
    let sql = format!(
        "{}{} ORDER BY t.id{}",
        select::<C>(),
        filter.where_sql(),
        filter.page_sql()
    );
    let rows = filter
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    Ok((
        count,
        rows.iter().map(C::from_row).collect::<Result<_, _>>()?,
    ))
}

/// 409 on `site` when the site already has a config other than `except`.
async fn check_site_free<C: SiteConfig>(
    conn: &mut AnyConnection,
    site_id: i64,
    except: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT t.id, s.name FROM {} t JOIN sites s ON s.id = t.site_id \
         WHERE t.site_id = $1 AND t.id <> $2",
        C::TABLE
    );
    let taken = sqlx::query(&sql)
        .bind(site_id)
        .bind(except)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = taken {
        let id: i64 = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        return Err(StoreError::Conflict {
            field: "site".to_owned(),
            message: format!(
                "site `{name}` already has a {what} ({path}/{id}); a site has one {what}: \
                 change that one instead",
                what = C::WHAT,
                path = C::PATH,
            ),
        });
    }
    Ok(())
}

/// Constraint failures of these tables are all about the site: name the API field.
fn site_error(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict { message, .. } => StoreError::Conflict {
            field: "site".to_owned(),
            message,
        },
        StoreError::InvalidReference { message, .. } => StoreError::InvalidReference {
            field: "site".to_owned(),
            message,
        },
        other => other,
    }
}

/// Creates site `site_id`'s config (call inside a write transaction).
///
/// # Errors
/// The site has one already (409 `site`); the site is gone (400 `site`); the store failed.
pub async fn create<C: SiteConfig>(
    conn: &mut AnyConnection,
    site_id: i64,
    values: &C::Values,
    now_ms: i64,
) -> Result<C, StoreError> {
    check_site_free::<C>(conn, site_id, 0).await?;
    let n = C::COLUMNS.len();
    let placeholders: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} (site_id, {}, created_at, updated_at) VALUES ($1, {}, ${t}, ${t}) \
         RETURNING id",
        C::TABLE,
        C::COLUMNS.join(", "),
        placeholders.join(", "),
        t = n + 2,
    );
    let q = C::bind(values, sqlx::query(&sql).bind(site_id));
    let row = q
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await
        .map_err(site_error)?;
    get(conn, row.try_get(0)?).await
}

/// Replaces config `id` (site included; call inside a write transaction).
///
/// # Errors
/// No such config (404); the new site has one already (409 `site`); the site is gone
/// (400 `site`); the store failed.
pub async fn update<C: SiteConfig>(
    conn: &mut AnyConnection,
    id: i64,
    site_id: i64,
    values: &C::Values,
    now_ms: i64,
) -> Result<C, StoreError> {
    check_site_free::<C>(conn, site_id, id).await?;
    let n = C::COLUMNS.len();
    let sets: Vec<String> = C::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 2))
        .collect();
    let sql = format!(
        "UPDATE {} SET site_id = $1, {}, updated_at = ${} WHERE id = ${}",
        C::TABLE,
        sets.join(", "),
        n + 2,
        n + 3
    );
    let q = C::bind(values, sqlx::query(&sql).bind(site_id));
    let done = q
        .bind(now_ms)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(site_error)?;
    if done.rows_affected() == 0 {
        return Err(not_found::<C>(id));
    }
    get(conn, id).await
}

/// Deletes config `id`.
///
/// # Errors
/// No such config (404); the store failed.
pub async fn delete<C: SiteConfig>(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let done = sqlx::query(&format!("DELETE FROM {} WHERE id = $1", C::TABLE))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(not_found::<C>(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!("Proxy".parse::<DhcpMode>(), Ok(DhcpMode::Proxy));
        assert_eq!(" server ".parse::<DhcpMode>(), Ok(DhcpMode::Server));
        let e = "relay".parse::<DhcpMode>().unwrap_err();
        assert_eq!(e.to_string(), "`relay` is not one of server, proxy");
    }

    #[test]
    fn select_lists_every_column_once() {
        let sql = select::<TftpConfig>();
        for c in TftpConfig::COLUMNS {
            assert_eq!(sql.matches(&format!("t.{c},")).count(), 1, "{c} in {sql}");
        }
        assert!(sql.ends_with("FROM tftp_configs t JOIN sites s ON s.id = t.site_id"));
    }
}
