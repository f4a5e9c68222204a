//! The alarm evaluator: raises alarms while real conditions hold and clears them when they end.
//!
//! A pass ([`evaluate`]) runs in one write transaction that first takes the lock row
//! `settings.o2ims_alarm_scan` (so replicas sharing the database take turns). It computes the
//! conditions that hold now ([`conditions`]), compares them with the open alarms and:
//! - raises an alarm (NEW) for each condition without an open alarm — the store's UNIQUE
//!   `open_key` keeps at most one open alarm per (definition, object);
//! - clears (CLEAR) each open alarm whose condition ended (or whose object is gone);
//! - records a CHANGE when an open alarm's details moved (a new error message, a new usage);
//! - purges cleared alarms older than the configured retention ([`super::service_config`]).
//!
//! Notifications for every event are queued in the same transaction ([`super::notify`]).
//! An alarm an operator cleared while its condition holds is latched (`latch_key`) and raised
//! again only after the condition has ended once.
//!
//! Conditions (see [`super::dictionary::DEFINITIONS`]):
//! - `edge-down`: a worker heard from at least once, not revoked, shown `inactive` (no heartbeat
//!   for three of its intervals, [`crate::store::workers::shown_status`]);
//! - `edge-service-error`: a worker shown `error`;
//! - `machine-provisioning-failed`: a machine whose status is `ERROR` (or `FAILED`);
//! - `ip-pool-usage-high`: distinct addresses of unexpired active leases inside a pool (its
//!   range, or its network's hosts, without the gateway; leases of the pool's site or of no
//!   site) cover ≥ 90 % of its usable size; an open alarm stays until usage is under 85 %.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::alarms::{self, open_key};
use super::dictionary::{self, ObjectKind};
use super::notify::{self, EventType};
use super::service_config;
use crate::api::page::{MAX_PAGE_SIZE, PageRequest};
use crate::db::{Db, StoreError, format_ts, now_ms};
use crate::model::WorkerStatus;
use crate::o2ims::{CloudSettings, cloud_settings};
use crate::store::ippools;
use crate::store::workers::shown_status;

/// The `settings` key the evaluator locks (and stamps with the time of its last pass).
pub const SCAN_LOCK_KEY: &str = "o2ims_alarm_scan";
/// How often the evaluator runs.
pub const EVAL_INTERVAL: Duration = Duration::from_secs(1);
/// One day in milliseconds (retention).
const DAY_MS: i64 = 86_400_000;

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The definition's name.
    pub definition: &'static str,
    /// The object's kind.
    pub kind: ObjectKind,
    /// The object's row id.
    pub row: i64,
    /// What was seen (`objectName` and the condition's figures).
    pub details: Value,
}

type WorkerRow = (i64, String, String, Option<i64>, i64, Option<String>, i64);

async fn worker_conditions(
    conn: &mut AnyConnection,
    now: i64,
    out: &mut Vec<Condition>,
) -> Result<(), StoreError> {
    let rows: Vec<WorkerRow> = sqlx::query_as(
        "SELECT id, worker_id, status, last_heartbeat, heartbeat_interval_ms, last_error, \
         revoked FROM workers ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (id, worker_id, status, last_hb, interval, last_error, revoked) in rows {
        if revoked != 0 {
            continue;
        }
        let stored = status.parse().unwrap_or(WorkerStatus::Inactive);
        match shown_status(stored, last_hb, interval, now) {
            WorkerStatus::Inactive if last_hb.is_some() => out.push(Condition {
                definition: dictionary::EDGE_DOWN,
                kind: ObjectKind::Edge,
                row: id,
                details: json!({
                    "objectName": worker_id,
                    "lastHeartbeat": last_hb.map(format_ts),
                    "heartbeatIntervalMs": interval,
                }),
            }),
            WorkerStatus::Error => out.push(Condition {
                definition: dictionary::EDGE_SERVICE_ERROR,
                kind: ObjectKind::Edge,
                row: id,
                details: json!({"objectName": worker_id, "lastError": last_error}),
            }),
            _ => {}
        }
    }
    Ok(())
}

async fn machine_conditions(
    conn: &mut AnyConnection,
    out: &mut Vec<Condition>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, hostname, mac, status FROM machines \
         WHERE UPPER(status) IN ('ERROR', 'FAILED') ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    out.extend(
        rows.into_iter()
            .map(|(id, hostname, mac, status)| Condition {
                definition: dictionary::MACHINE_FAILED,
                kind: ObjectKind::Machine,
                row: id,
                details: json!({"objectName": hostname, "mac": mac, "status": status}),
            }),
    );
    Ok(())
}

/// Whether the pool usage `used` of `size` raises the alarm (`open`: it is open already and
/// stays until usage falls under the clear threshold).
#[must_use]
pub fn pool_over(used: i64, size: i64, open: bool) -> bool {
    if size <= 0 {
        return false;
    }
    let threshold = if open {
        dictionary::POOL_CLEAR_PERCENT
    } else {
        dictionary::POOL_RAISE_PERCENT
    };
    used.saturating_mul(100) >= threshold.saturating_mul(size)
}

/// The distinct addresses of `leases` (address, site) inside a pool.
#[must_use]
pub fn pool_used(
    net: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    range: Option<(Ipv4Addr, Ipv4Addr)>,
    site: Option<i64>,
    leases: &[(Ipv4Addr, Option<i64>)],
) -> i64 {
    let inside = |a: Ipv4Addr| match range {
        Some((s, e)) => s <= a && a <= e,
        None => {
            net.contains(&a)
                && (net.prefix_len() >= 31 || (a != net.network() && a != net.broadcast()))
        }
    };
    let used: BTreeSet<Ipv4Addr> = leases
        .iter()
        .filter(|(a, s)| {
            inside(*a) && Some(*a) != gateway && (site.is_none() || s.is_none() || *s == site)
        })
        .map(|(a, _)| *a)
        .collect();
    i64::try_from(used.len()).unwrap_or(i64::MAX)
}

async fn pool_conditions(
    conn: &mut AnyConnection,
    now: i64,
    open: &BTreeSet<String>,
    out: &mut Vec<Condition>,
) -> Result<(), StoreError> {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT ip_address, site_id FROM leases \
         WHERE LOWER(binding_state) = 'active' AND lease_end > $1",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let leases: Vec<(Ipv4Addr, Option<i64>)> = rows
        .into_iter()
        .filter_map(|(a, s)| a.trim().parse().ok().map(|a| (a, s)))
        .collect();
    for page in 1.. {
        let request = PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let (count, list) = ippools::list(conn, None, request).await?;
        let done =
            list.is_empty() || i64::from(page).saturating_mul(i64::from(MAX_PAGE_SIZE)) >= count;
        for p in list {
            let Ok(net) = p.cidr.parse::<Ipv4Net>() else {
                continue;
            };
            let ip = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok());
            let range = ip(&p.range_start).zip(ip(&p.range_end));
            let used = pool_used(net, ip(&p.gateway), range, p.site, &leases);
            let key = open_key(dictionary::POOL_EXHAUSTED, ObjectKind::IpPool.key(), p.id);
            if pool_over(used, p.size, open.contains(&key)) {
                out.push(Condition {
                    definition: dictionary::POOL_EXHAUSTED,
                    kind: ObjectKind::IpPool,
                    row: p.id,
                    details: json!({
                        "objectName": p.cidr,
                        "site": p.site_name,
                        "used": used,
                        "size": p.size,
                        "usagePercent": used.saturating_mul(100) / p.size.max(1),
                    }),
                });
            }
        }
        if done {
            break;
        }
    }
    Ok(())
}

/// The conditions holding at `now`, by open key; `open` are the keys of the open alarms
/// (for the pool hysteresis).
///
/// # Errors
/// The store failed.
pub async fn conditions(
    conn: &mut AnyConnection,
    open: &BTreeSet<String>,
    now: i64,
) -> Result<BTreeMap<String, Condition>, StoreError> {
    let mut list = Vec::new();
    worker_conditions(conn, now, &mut list).await?;
    machine_conditions(conn, &mut list).await?;
    pool_conditions(conn, now, open, &mut list).await?;
    Ok(list
        .into_iter()
        .map(|c| (open_key(c.definition, c.kind.key(), c.row), c))
        .collect())
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Alarms raised.
    pub raised: usize,
    /// Open alarms whose details changed.
    pub changed: usize,
    /// Alarms cleared.
    pub cleared: usize,
    /// Cleared alarms purged after the retention period.
    pub purged: u64,
    /// Notifications queued.
    pub queued: usize,
}

/// Runs `update` (an UPDATE of open alarm `id`, guarded by `open_key IS NOT NULL`) on `conn`
/// and, when it changed the row, queues the notification of `event`; returns how many were
/// queued, or `None` when the alarm was no longer open (another pass got it first).
async fn update_open<'q>(
    conn: &mut AnyConnection,
    update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    cloud: &CloudSettings,
    id: &str,
    event: EventType,
    now: i64,
) -> Result<Option<usize>, StoreError> {
    if update.execute(&mut *conn).await?.rows_affected() == 0 {
        return Ok(None);
    }
    notify_row(conn, cloud, id, event, now).await.map(Some)
}

async fn notify_row(
    conn: &mut AnyConnection,
    cloud: &CloudSettings,
    id: &str,
    event: EventType,
    now: i64,
) -> Result<usize, StoreError> {
    match alarms::get_on(conn, id).await? {
        Some(row) => notify::enqueue(conn, cloud, &row.json(cloud), event, now).await,
        None => Ok(0),
    }
}

/// One evaluation pass at `now` (Unix ms), in one transaction.
///
/// # Errors
/// The store failed (nothing is stored then; the next pass sees the same conditions).
pub async fn evaluate(db: &Db, now: i64) -> Result<Pass, StoreError> {
    let cloud = cloud_settings(db).await?;
    let mut tx = db.begin_write().await?;
    // The lock row: concurrent passes on other replicas wait here until this one commits.
    crate::o2ims::put_setting(&mut tx, SCAN_LOCK_KEY, &now.to_string()).await?;
    let open = alarms::open_on(&mut tx).await?;
    let latches: BTreeSet<String> = sqlx::query_as::<_, (String,)>(
        "SELECT latch_key FROM o2ims_alarms WHERE latch_key IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(k,)| k)
    .collect();
    let open_keys: BTreeSet<String> = open
        .iter()
        .map(|a| open_key(&a.definition, &a.object_kind, a.object_row))
        .collect();
    let now_holding = conditions(&mut tx, &open_keys, now).await?;
    let mut pass = Pass::default();
    for latch in latches.iter().filter(|k| !now_holding.contains_key(*k)) {
        sqlx::query("UPDATE o2ims_alarms SET latch_key = NULL WHERE latch_key = $1")
            .bind(latch)
            .execute(&mut *tx)
            .await?;
    }
    for a in &open {
        let key = open_key(&a.definition, &a.object_kind, a.object_row);
        match now_holding.get(&key) {
            None => {
                let clear = sqlx::query(
                    "UPDATE o2ims_alarms SET cleared_at = $1, changed_at = $1, open_key = NULL \
                     WHERE id = $2 AND open_key IS NOT NULL",
                )
                .bind(now)
                .bind(&a.id);
                let queued =
                    update_open(&mut tx, clear, &cloud, &a.id, EventType::Clear, now).await?;
                if let Some(queued) = queued {
                    pass.cleared += 1;
                    pass.queued += queued;
                }
            }
            Some(c) => {
                let stored: Value = serde_json::from_str(&a.details).unwrap_or(Value::Null);
                if stored != c.details {
                    let change = sqlx::query(
                        "UPDATE o2ims_alarms SET details = $1, changed_at = $2 \
                         WHERE id = $3 AND open_key IS NOT NULL",
                    )
                    .bind(c.details.to_string())
                    .bind(now)
                    .bind(&a.id);
                    let queued =
                        update_open(&mut tx, change, &cloud, &a.id, EventType::Change, now).await?;
                    if let Some(queued) = queued {
                        pass.changed += 1;
                        pass.queued += queued;
                    }
                }
            }
        }
    }
    for (key, c) in &now_holding {
        if open_keys.contains(key) || latches.contains(key) {
            continue;
        }
        let Some(def) = dictionary::definition(c.definition) else {
            continue;
        };
        let id = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO o2ims_alarms (id, definition, object_kind, object_row, object_id, \
             severity, raised_at, changed_at, acknowledged, details, open_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, $8, $9)",
        )
        .bind(&id)
        .bind(c.definition)
        .bind(c.kind.key())
        .bind(c.row)
        .bind(cloud.id(c.kind.key(), c.row).to_string())
        .bind(def.severity)
        .bind(now)
        .bind(c.details.to_string())
        .bind(key)
        .execute(&mut *tx)
        .await?;
        pass.raised += 1;
        pass.queued += notify_row(&mut tx, &cloud, &id, EventType::New, now).await?;
    }
    let retention = service_config::load_on(&mut tx).await?.retention_period;
    let purged = sqlx::query(
        "DELETE FROM o2ims_alarms WHERE cleared_at IS NOT NULL AND cleared_at < $1 \
         AND latch_key IS NULL",
    )
    .bind(now.saturating_sub(retention.saturating_mul(DAY_MS)))
    .execute(&mut *tx)
    .await?;
    pass.purged = purged.rows_affected();
    tx.commit().await?;
    Ok(pass)
}

/// Runs an evaluation pass every [`EVAL_INTERVAL`] until dropped (aborted); failures are
/// logged and retried on the next pass.
pub async fn run_evaluator(db: Db) {
    let mut tick = tokio::time::interval(EVAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match evaluate(&db, now_ms()).await {
            Ok(p) if p.raised + p.cleared + p.changed > 0 => tracing::info!(
                raised = p.raised,
                cleared = p.cleared,
                changed = p.changed,
                queued = p.queued,
                "o2ims alarms evaluated"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("o2ims alarm evaluation failed (retrying): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_thresholds_with_hysteresis() {
        assert!(pool_over(9, 10, false));
        assert!(!pool_over(8, 10, false));
        assert!(pool_over(17, 20, true));
        assert!(!pool_over(16, 20, true));
        assert!(!pool_over(0, 0, false));
    }

    #[test]
    fn pool_usage_counts_distinct_addresses_in_range() {
        let net: Ipv4Net = "10.0.0.0/29".parse().expect("net");
        let a = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        let leases = [
            (a("10.0.0.2"), None),
            (a("10.0.0.2"), Some(1)),
            (a("10.0.0.3"), Some(1)),
            (a("10.0.0.4"), Some(2)),
            (a("10.0.0.1"), None),
            (a("10.0.0.7"), None),
            (a("10.0.1.2"), None),
        ];
        assert_eq!(
            pool_used(net, Some(a("10.0.0.1")), None, Some(1), &leases),
            2
        );
        assert_eq!(pool_used(net, None, None, None, &leases), 4);
        let range = Some((a("10.0.0.3"), a("10.0.0.4")));
        assert_eq!(pool_used(net, None, range, None, &leases), 2);
    }
}
