//! Inventory change detection: turns creates, changes and deletes of resources (machines),
//! resource pools (sites) and deployment managers (clusters) into queued notifications.
//!
//! The objects as last seen are kept in `o2ims_object_state` (kind, id, JSON). A pass
//! ([`detect_changes`]) takes the lock row `settings.o2ims_change_scan` inside one write
//! transaction, builds every object as the API shows it, diffs them against the stored state,
//! writes the differences back and enqueues one `InventoryChangeNotification` per event and
//! matching subscription (see [`super::subscriptions`] for the filter) in the same
//! transaction. So replicas on one database take turns, an event is queued exactly once, and
//! a crash between the two loses nothing. The task [`run_detector`] runs a pass every second
//! and as soon as the store's `config_rev` counter moves.
//!
//! Notification body (SPEC10 §3.2.5.1.2, with the states as JSON objects as the Red Hat
//! implementation sends them): `notificationId`, `subscriptionId`, `consumerSubscriptionId`,
//! `notificationEventType` (0 create, 1 modify, 2 delete), `objectType`, `objectRef` (the
//! object's URI under `/o2ims-infrastructureInventory/v1`, after the configured `serviceUri`),
//! `priorObjectState` (null on create) and `postObjectState` (null on delete).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::objects;
use super::query::Filter;
use super::subscriptions::parse_filter;
use super::{CloudSettings, cloud_settings};
use crate::api::page::{MAX_PAGE_SIZE, PageRequest};
use crate::db::{Db, StoreError, now_ms};
use crate::store::machines::{self, Machine, MachineFilter};
use crate::uplink::revs;

/// The `settings` key the detector locks (and stamps with the time of its last pass).
pub const SCAN_LOCK_KEY: &str = "o2ims_change_scan";
/// A full pass at least this often (catches changes that do not move `config_rev`).
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How often `config_rev` is read.
pub const REV_POLL: Duration = Duration::from_millis(250);
/// The API prefix object references are written under.
pub const REF_PREFIX: &str = "/o2ims-infrastructureInventory/v1";

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// It appeared.
    Create = 0,
    /// It changed.
    Modify = 1,
    /// It disappeared.
    Delete = 2,
}

/// One detected change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `resource`, `resourcePool` or `deploymentManager`.
    pub kind: &'static str,
    /// The object's id.
    pub object_id: String,
    /// What happened.
    pub event: EventType,
    /// Its URI.
    pub object_ref: String,
    /// The state before (None on create).
    pub prior: Option<Value>,
    /// The state after (None on delete).
    pub post: Option<Value>,
}

/// An object as the API shows it, with its URI.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// The object.
    pub json: Value,
    /// Its URI.
    pub object_ref: String,
}

async fn all_machines(db: &Db) -> Result<Vec<Machine>, StoreError> {
    let mut out = Vec::new();
    for page in 1.. {
        let request = PageRequest {
            page,
            page_size: MAX_PAGE_SIZE,
        };
        let (count, list) = machines::list(db, &MachineFilter::default(), request).await?;
        let empty = list.is_empty();
        out.extend(list);
        if empty || i64::try_from(out.len()).unwrap_or(i64::MAX) >= count {
            break;
        }
    }
    Ok(out)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::InvalidReference {
        field: "object".to_owned(),
        message: format!("cannot serialise an inventory object: {e}"),
    })
}

/// Every reported object, by (kind, id), as the API shows it now.
///
/// # Errors
/// The store failed.
pub async fn current_objects(
    db: &Db,
    cloud: &CloudSettings,
) -> Result<BTreeMap<(String, String), Current>, StoreError> {
    let root = format!(
        "{}{REF_PREFIX}",
        cloud
            .service_uri
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
    );
    let mut out = BTreeMap::new();
    let mut conn = db.pool().acquire().await?;
    for s in objects::all_sites(&mut conn).await? {
        let pool = cloud.pool(&s);
        let id = pool.resource_pool_id.to_string();
        let object_ref = format!("{root}/resourcePools/{id}");
        out.insert(
            ("resourcePool".to_owned(), id),
            Current {
                json: to_json(&pool)?,
                object_ref,
            },
        );
    }
    drop(conn);
    let clusters = objects::all_clusters(db).await?;
    let cores = objects::cores_per_cluster(db).await?;
    let mut site_of = BTreeMap::new();
    for c in &clusters {
        let n = cores
            .binary_search_by_key(&c.id, |(id, _)| *id)
            .map_or(0, |i| cores[i].1);
        let dm = cloud.deployment_manager(c, n);
        let id = dm.deployment_manager_id.to_string();
        let object_ref = format!("{root}/deploymentManagers/{id}");
        out.insert(
            ("deploymentManager".to_owned(), id),
            Current {
                json: to_json(&dm)?,
                object_ref,
            },
        );
        if let Some(site) = c.site_id {
            site_of.insert(c.id, site);
        }
    }
    for m in all_machines(db).await? {
        // Machines of clusters without a site belong to no pool: not in the inventory.
        let Some(site) = site_of.get(&m.cluster_id) else {
            continue;
        };
        let r = cloud.resource(*site, &m);
        let id = r.resource_id.to_string();
        let object_ref = format!("{root}/resourcePools/{}/resources/{id}", r.resource_pool_id);
        out.insert(
            ("resource".to_owned(), id),
            Current {
                json: to_json(&r)?,
                object_ref,
            },
        );
    }
    Ok(out)
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "resource" => "resource",
        "resourcePool" => "resourcePool",
        _ => "deploymentManager",
    }
}

/// The changes from `prior` (stored JSON text by kind and id) to `current` (pure), parents
/// before children: pools, then deployment managers, then resources, then the deletes in the
/// reverse order.
#[must_use]
pub fn diff(
    prior: &BTreeMap<(String, String), String>,
    current: &BTreeMap<(String, String), Current>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for ((kind, id), now) in current {
        let before = prior
            .get(&(kind.clone(), id.clone()))
            .map(|s| serde_json::from_str::<Value>(s).unwrap_or(Value::Null));
        let event = match &before {
            None => EventType::Create,
            Some(b) if *b == now.json => continue,
            Some(_) => EventType::Modify,
        };
        out.push(Change {
            kind: kind_name(kind),
            object_id: id.clone(),
            event,
            object_ref: now.object_ref.clone(),
            prior: before,
            post: Some(now.json.clone()),
        });
    }
    for ((kind, id), before) in prior {
        if current.contains_key(&(kind.clone(), id.clone())) {
            continue;
        }
        let before: Value = serde_json::from_str(before).unwrap_or(Value::Null);
        let object_ref = before
            .get("objectRef")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default();
        let mut state = before;
        if let Value::Object(map) = &mut state {
            map.remove("objectRef");
        }
        out.push(Change {
            kind: kind_name(kind),
            object_id: id.clone(),
            event: EventType::Delete,
            object_ref,
            prior: Some(state),
            post: None,
        });
    }
    // Parents first: pools, deployment managers, resources; deletes last, children first.
    out.sort_by_key(|c| match c.event {
        EventType::Delete => 3 + (2 - rank(c.kind)),
        EventType::Create | EventType::Modify => rank(c.kind),
    });
    out
}

fn rank(kind: &str) -> u8 {
    match kind {
        "resourcePool" => 0,
        "deploymentManager" => 1,
        _ => 2,
    }
}

/// Whether a subscription with `filter` wants `change`.
#[must_use]
pub fn wanted(filter: Option<&Filter>, change: &Change) -> bool {
    let Some(filter) = filter else {
        return true;
    };
    let mut view = change
        .post
        .clone()
        .or_else(|| change.prior.clone())
        .unwrap_or(Value::Null);
    if let Value::Object(map) = &mut view {
        map.insert("objectType".to_owned(), json!(change.kind));
        map.insert(
            "notificationEventType".to_owned(),
            json!(change.event as i64),
        );
    }
    filter.matches(&view)
}

/// The stored state of an object: its JSON plus its `objectRef` (so a delete can name it).
fn stored_json(c: &Current) -> String {
    let mut v = c.json.clone();
    if let Value::Object(map) = &mut v {
        map.insert("objectRef".to_owned(), json!(c.object_ref));
    }
    v.to_string()
}

type SubRow = (String, Option<String>, Option<String>);

/// One detection pass at time `now` (Unix ms): diffs the inventory against the stored state,
/// stores the new state and queues the notifications, in one transaction. Returns the changes.
///
/// # Errors
/// The store failed (nothing is stored then; the next pass sees the same changes).
pub async fn detect_changes(db: &Db, now: i64) -> Result<Vec<Change>, StoreError> {
    let cloud = cloud_settings(db).await?;
    let mut tx = db.begin_write().await?;
    // The lock row: concurrent passes on other replicas wait here until this one commits.
    super::put_setting(&mut tx, SCAN_LOCK_KEY, &now.to_string()).await?;
    let stored: Vec<(String, String, String)> =
        sqlx::query_as("SELECT kind, object_id, json FROM o2ims_object_state")
            .fetch_all(&mut *tx)
            .await?;
    let current = current_objects(db, &cloud).await?;
    // The stored JSON carries `objectRef`; compare without it.
    let mut prior_refs = BTreeMap::new();
    let prior: BTreeMap<(String, String), String> = stored
        .into_iter()
        .map(|(k, id, j)| {
            prior_refs.insert((k.clone(), id.clone()), j.clone());
            let mut v: Value = serde_json::from_str(&j).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.remove("objectRef");
            }
            ((k, id), v.to_string())
        })
        .collect();
    let mut changes = diff(&prior, &current);
    for c in &mut changes {
        if c.event == EventType::Delete {
            if let Some(raw) = prior_refs.get(&(c.kind.to_owned(), c.object_id.clone())) {
                let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
                if let Some(r) = v.get("objectRef").and_then(Value::as_str) {
                    r.clone_into(&mut c.object_ref);
                }
            }
        }
    }
    if changes.is_empty() {
        tx.commit().await?;
        return Ok(changes);
    }
    for c in &changes {
        let key = (c.kind.to_owned(), c.object_id.clone());
        match current.get(&key) {
            Some(now_obj) => {
                sqlx::query(
                    "INSERT INTO o2ims_object_state (kind, object_id, json) VALUES ($1, $2, $3) \
                     ON CONFLICT (kind, object_id) DO UPDATE SET json = excluded.json",
                )
                .bind(c.kind)
                .bind(&c.object_id)
                .bind(stored_json(now_obj))
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM o2ims_object_state WHERE kind = $1 AND object_id = $2")
                    .bind(c.kind)
                    .bind(&c.object_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    let subs: Vec<SubRow> = sqlx::query_as(
        "SELECT id, consumer_subscription_id, filter FROM o2ims_subscriptions ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (sub_id, consumer, filter) in subs {
        let filter = match filter.as_deref().map(parse_filter).transpose() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(subscription = %sub_id, "stored filter is invalid ({e}); sending every event");
                None
            }
        };
        for c in changes.iter().filter(|c| wanted(filter.as_ref(), c)) {
            let body = json!({
                "notificationId": Uuid::new_v4(),
                "subscriptionId": sub_id,
                "consumerSubscriptionId": consumer,
                "notificationEventType": c.event as i64,
                "objectType": c.kind,
                "objectRef": c.object_ref,
                "priorObjectState": c.prior,
                "postObjectState": c.post,
            });
            sqlx::query(
                "INSERT INTO o2ims_notifications \
                 (subscription_id, body, attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, 0, $3, $3)",
            )
            .bind(&sub_id)
            .bind(body.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(changes)
}

/// Runs detection passes until dropped: every [`SCAN_INTERVAL`], and within [`REV_POLL`] of a
/// `config_rev` change. Failures are logged and retried on the next pass.
pub async fn run_detector(db: Db) {
    let mut tick = tokio::time::interval(REV_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rev = None;
    let mut last_scan = i64::MIN;
    let interval_ms = i64::try_from(SCAN_INTERVAL.as_millis()).unwrap_or(1000);
    loop {
        tick.tick().await;
        let rev = match revs::read(&db).await {
            Ok(r) => Some(r.config),
            Err(e) => {
                tracing::warn!("o2ims change detection cannot read config_rev: {e}");
                continue;
            }
        };
        let now = now_ms();
        if rev == last_rev && now.saturating_sub(last_scan) < interval_ms {
            continue;
        }
        match detect_changes(&db, now).await {
            Ok(changes) => {
                if !changes.is_empty() {
                    tracing::debug!(changes = changes.len(), "o2ims inventory changes queued");
                }
                last_rev = rev;
                last_scan = now;
            }
            Err(e) => tracing::warn!("o2ims change detection failed (retrying): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(v: Value) -> Current {
        Current {
            json: v,
            object_ref: "/r".to_owned(),
        }
    }

    #[test]
    fn diff_finds_create_modify_delete() {
        let key = |k: &str, id: &str| (k.to_owned(), id.to_owned());
        let mut prior = BTreeMap::new();
        prior.insert(key("resource", "a"), json!({"x": 1}).to_string());
        prior.insert(key("resource", "b"), json!({"x": 2}).to_string());
        prior.insert(key("resource", "c"), json!({"x": 3}).to_string());
        let mut current = BTreeMap::new();
        current.insert(key("resource", "a"), cur(json!({"x": 1})));
        current.insert(key("resource", "b"), cur(json!({"x": 5})));
        current.insert(key("resourcePool", "d"), cur(json!({"y": 1})));
        let changes = diff(&prior, &current);
        let got: Vec<_> = changes
            .iter()
            .map(|c| (c.object_id.as_str(), c.event))
            .collect();
        assert_eq!(
            got,
            vec![
                ("d", EventType::Create),
                ("b", EventType::Modify),
                ("c", EventType::Delete)
            ]
        );
        assert_eq!(changes[1].prior, Some(json!({"x": 2})));
        assert_eq!(changes[2].post, None);
    }

    #[test]
    fn filters_see_type_and_event() {
        let change = Change {
            kind: "resource",
            object_id: "a".to_owned(),
            event: EventType::Modify,
            object_ref: String::new(),
            prior: None,
            post: Some(json!({"description": "m1"})),
        };
        let f = |s: &str| parse_filter(s).expect("filter");
        assert!(wanted(None, &change));
        assert!(wanted(Some(&f("(eq,objectType,resource)")), &change));
        assert!(!wanted(Some(&f("(eq,objectType,resourcePool)")), &change));
        assert!(wanted(Some(&f("(eq,notificationEventType,1)")), &change));
        assert!(!wanted(Some(&f("(eq,description,m2)")), &change));
    }
}
