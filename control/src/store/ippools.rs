//! IP pools: the IPv4 subnets a site's DHCP server hands addresses from (the edge's
//! `[[subnet]]`). A pool has a network (`cidr`), an optional gateway, an optional dynamic range,
//! DNS servers and a lease time. Pools of one site (or the global pools, without a site) never
//! overlap: writes check that inside their transaction, serialised per site.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::api::page::PageRequest;
use crate::db::StoreError;
use crate::store::sites::{Arg, Filter, site_fk, ts, xact_lock};

/// Default lease time (seconds).
pub const DEFAULT_LEASE_TIME: i64 = 3600;
/// Shortest lease time (seconds).
pub const MIN_LEASE_TIME: i64 = 60;
/// Longest lease time (seconds, one year).
pub const MAX_LEASE_TIME: i64 = 31_536_000;

/// An IP pool as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IpPool {
    /// Id.
    pub id: i64,
    /// The site's id; null for a global pool.
    pub site: Option<i64>,
    /// The site's name.
    pub site_name: Option<String>,
    /// The network, such as `10.77.0.0/24`.
    pub cidr: String,
    /// Default gateway.
    pub gateway: Option<String>,
    /// First address of the dynamic range.
    pub range_start: Option<String>,
    /// Last address of the dynamic range.
    pub range_end: Option<String>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// Lease time in seconds.
    pub lease_time: i64,
    /// Free text.
    pub description: String,
    /// Addresses the pool can hand out: the range (or every host address of the network),
    /// without the gateway.
    pub size: i64,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "ts::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// The writable fields of a pool, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPoolValues {
    /// Site id; `None` for global.
    pub site_id: Option<i64>,
    /// The network (host bits clear).
    pub cidr: Ipv4Net,
    /// Gateway, a host address of `cidr`.
    pub gateway: Option<Ipv4Addr>,
    /// Dynamic range, inclusive, inside `cidr`.
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_time: i64,
    /// Description.
    pub description: String,
}

/// The host addresses of `net`: all but the network and broadcast addresses (a /31 has two and
/// a /32 one, RFC 3021).
#[must_use]
pub fn host_count(net: Ipv4Net) -> i64 {
    let all = 1_i64 << (32 - u32::from(net.prefix_len()));
    if all <= 2 { all } else { all - 2 }
}

/// The addresses a pool can hand out: its range (or every host address of `net`), minus the
/// gateway when it falls inside.
#[must_use]
pub fn usable_size(
    net: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    range: Option<(Ipv4Addr, Ipv4Addr)>,
) -> i64 {
    let is_host =
        |a: Ipv4Addr| net.prefix_len() >= 31 || (a != net.network() && a != net.broadcast());
    let (total, gateway_inside) = match range {
        Some((start, end)) => (
            (i64::from(u32::from(end)) - i64::from(u32::from(start)) + 1).max(0),
            gateway.is_some_and(|g| start <= g && g <= end),
        ),
        None => (
            host_count(net),
            gateway.is_some_and(|g| net.contains(&g) && is_host(g)),
        ),
    };
    total - i64::from(gateway_inside)
}

const SELECT: &str = "SELECT p.id, p.site_id, s.name AS site_name, p.cidr, p.gateway, \
     p.range_start, p.range_end, p.dns, p.lease_time, p.description, p.created_at, p.updated_at \
     FROM ip_pools p LEFT JOIN sites s ON s.id = p.site_id";

fn from_row(row: &AnyRow) -> Result<IpPool, sqlx::Error> {
    let cidr: String = row.try_get("cidr")?;
    let gateway: Option<String> = row.try_get("gateway")?;
    let range_start: Option<String> = row.try_get("range_start")?;
    let range_end: Option<String> = row.try_get("range_end")?;
    let dns: String = row.try_get("dns")?;
    let ip = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok());
    let range = ip(&range_start).zip(ip(&range_end));
    let size = cidr
        .parse::<Ipv4Net>()
        .map_or(0, |net| usable_size(net, ip(&gateway), range));
    Ok(IpPool {
        id: row.try_get("id")?,
        site: row.try_get("site_id")?,
        site_name: row.try_get("site_name")?,
        cidr,
        gateway,
        range_start,
        range_end,
        dns: dns
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        lease_time: row.try_get("lease_time")?,
        description: row.try_get("description")?,
        size,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The pool `id`.
///
/// # Errors
/// [`StoreError::NotFound`]; the store failed.
pub async fn get(conn: &mut AnyConnection, id: i64) -> Result<IpPool, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("IP pool {id}")))?;
    Ok(from_row(&row)?)
}

/// One page of pools ordered by id (only those of `site` when given), and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    conn: &mut AnyConnection,
    site: Option<i64>,
    page: PageRequest,
) -> Result<(i64, Vec<IpPool>), StoreError> {
    let mut filter = Filter::default();
    if let Some(site) = site {
        filter.push("p.site_id = ?", Arg::Int(site));
    }
    let count = filter.count(conn, "ip_pools p").await?;
    let sql = format!(
        "{SELECT}{} ORDER BY p.id{}",
        filter.where_sql(),
        filter.page_sql()
    );
    let rows = filter
        .bind_page(sqlx::query(&sql), page)
        .fetch_all(&mut *conn)
        .await?;
    Ok((count, rows.iter().map(from_row).collect::<Result<_, _>>()?))
}

/// Base of the advisory-lock keys that serialise pool writes per site.
const POOL_LOCK_BASE: i64 = 0x4950_504f_0000_0000;

/// 409 on `cidr` when a pool of the same site (other than `except`) overlaps `values.cidr`.
async fn check_overlap(
    conn: &mut AnyConnection,
    values: &IpPoolValues,
    except: i64,
) -> Result<(), StoreError> {
    // Serialised per site, so two concurrent writers cannot both pass the check.
    xact_lock(
        conn,
        POOL_LOCK_BASE.wrapping_add(values.site_id.unwrap_or(0)),
    )
    .await?;
    let rows = match values.site_id {
        Some(site) => {
            sqlx::query("SELECT id, cidr FROM ip_pools WHERE site_id = $1 AND id <> $2 ORDER BY id")
                .bind(site)
                .bind(except)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            sqlx::query(
                "SELECT id, cidr FROM ip_pools WHERE site_id IS NULL AND id <> $1 ORDER BY id",
            )
            .bind(except)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let new = values.cidr;
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let cidr: String = row.try_get(1)?;
        let Ok(old) = cidr.parse::<Ipv4Net>() else {
            continue;
        };
        if old.contains(&new.network()) || new.contains(&old.network()) {
            let scope = if values.site_id.is_some() {
                "of this site"
            } else {
                "among the global pools"
            };
            return Err(StoreError::Conflict {
                field: "cidr".to_owned(),
                message: format!(
                    "{new} overlaps IP pool {id} ({old}) {scope}: pools of one site must not \
                     overlap; change the network or edit pool {id}"
                ),
            });
        }
    }
    Ok(())
}

fn opt_text(a: Option<Ipv4Addr>) -> Option<String> {
    a.map(|a| a.to_string())
}

fn dns_text(dns: &[Ipv4Addr]) -> String {
    dns.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates a pool (call inside a write transaction).
///
/// # Errors
/// It overlaps another pool of its site (409 `cidr`); the site is gone (400 `site`); the store
/// failed.
pub async fn create(
    conn: &mut AnyConnection,
    values: &IpPoolValues,
    now_ms: i64,
) -> Result<IpPool, StoreError> {
    check_overlap(conn, values, 0).await?;
    let row = sqlx::query(
        "INSERT INTO ip_pools (site_id, cidr, gateway, range_start, range_end, dns, lease_time, \
         description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(values.site_id)
    .bind(values.cidr.to_string())
    .bind(opt_text(values.gateway))
    .bind(opt_text(values.range.map(|r| r.0)))
    .bind(opt_text(values.range.map(|r| r.1)))
    .bind(dns_text(&values.dns))
    .bind(values.lease_time)
    .bind(values.description.as_str())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(site_fk)?;
    get(conn, row.try_get(0)?).await
}

/// Replaces the writable fields of pool `id` (call inside a write transaction).
///
/// # Errors
/// No such pool (404); it would overlap another pool of its site (409 `cidr`); the site is gone
/// (400 `site`); the store failed.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    values: &IpPoolValues,
    now_ms: i64,
) -> Result<IpPool, StoreError> {
    check_overlap(conn, values, id).await?;
    let done = sqlx::query(
        "UPDATE ip_pools SET site_id = $1, cidr = $2, gateway = $3, range_start = $4, \
         range_end = $5, dns = $6, lease_time = $7, description = $8, updated_at = $9 \
         WHERE id = $10",
    )
    .bind(values.site_id)
    .bind(values.cidr.to_string())
    .bind(opt_text(values.gateway))
    .bind(opt_text(values.range.map(|r| r.0)))
    .bind(opt_text(values.range.map(|r| r.1)))
    .bind(dns_text(&values.dns))
    .bind(values.lease_time)
    .bind(values.description.as_str())
    .bind(now_ms)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(site_fk)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("IP pool {id}")));
    }
    get(conn, id).await
}

/// Deletes pool `id`.
///
/// # Errors
/// No such pool (404); the store failed.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM ip_pools WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("IP pool {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sizes_count_hosts_range_and_gateway() {
        assert_eq!(host_count(net("10.0.0.0/24")), 254);
        assert_eq!(host_count(net("10.0.0.0/31")), 2);
        assert_eq!(host_count(net("10.0.0.1/32")), 1);
        assert_eq!(usable_size(net("10.0.0.0/24"), None, None), 254);
        assert_eq!(
            usable_size(net("10.0.0.0/24"), Some(ip("10.0.0.1")), None),
            253
        );
        let range = Some((ip("10.0.0.100"), ip("10.0.0.199")));
        assert_eq!(
            usable_size(net("10.0.0.0/24"), Some(ip("10.0.0.1")), range),
            100
        );
        assert_eq!(
            usable_size(net("10.0.0.0/24"), Some(ip("10.0.0.150")), range),
            99
        );
    }
}
