//! Alarm change notifications: queued in `o2ims_alarm_notifications` in the transaction that
//! raises, changes, clears or acknowledges an alarm ([`enqueue`]), and delivered to the alarm
//! subscriptions' callbacks by [`run_delivery`].
//!
//! The body is the `AlarmEventRecord` (spec and alias names, see [`super::alarms`]) with
//! `globalCloudId` (and `globalCloudID`), `consumerSubscriptionId`, `alarmSubscriptionId`,
//! `notificationId`, `notificationEventType` (0 NEW, 1 CHANGE, 2 CLEAR, 3 ACKNOWLEDGE) and
//! `objectRef` (the alarm's URI under `/o2ims-infrastructureMonitoring/v1`, after the
//! configured `serviceUri`).
//!
//! Delivery works like the inventory's ([`crate::o2ims::delivery`], whose HTTP client, POST
//! and backoff it uses): each subscription's queue is sent in order, its head claimed with a
//! compare-and-set on `next_attempt_at` (so one replica sends it), deleted after a 2xx answer
//! or rescheduled with exponential backoff; a notification only goes with a 2xx or with its
//! subscription (`ON DELETE CASCADE`). Deliveries run in their own tasks, at most
//! [`delivery::MAX_IN_FLIGHT`] at once and one per subscription, so a dead callback delays only
//! its own subscription and never the API.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::alarm_subscriptions::{self, AlarmSubscription};
use crate::db::{Db, StoreError, now_ms};
use crate::o2ims::CloudSettings;
use crate::o2ims::delivery::{self, HttpClient};

/// The monitoring API prefix object references are written under.
pub const REF_PREFIX: &str = "/o2ims-infrastructureMonitoring/v1";

/// `notificationEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventType {
    /// An alarm was raised.
    New = 0,
    /// An open alarm's details changed.
    Change = 1,
    /// An alarm was cleared.
    Clear = 2,
    /// An alarm was acknowledged.
    Acknowledge = 3,
}

impl EventType {
    /// Every event type.
    pub const ALL: [Self; 4] = [Self::New, Self::Change, Self::Clear, Self::Acknowledge];

    /// The name used by `eventFilter`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Change => "CHANGE",
            Self::Clear => "CLEAR",
            Self::Acknowledge => "ACKNOWLEDGE",
        }
    }

    /// The type named `s` (any case).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// The URI of alarm `id`.
#[must_use]
pub fn object_ref(cloud: &CloudSettings, id: &str) -> String {
    format!(
        "{}{REF_PREFIX}/alarms/{id}",
        cloud
            .service_uri
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
    )
}

/// The notification of `event` on `record` (an `AlarmEventRecord` as JSON) for `sub`.
#[must_use]
pub fn body(
    cloud: &CloudSettings,
    sub: &AlarmSubscription,
    record: &Value,
    event: EventType,
) -> Value {
    let id = record
        .get("alarmEventRecordId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = json!({
        "notificationId": Uuid::new_v4(),
        "alarmSubscriptionId": sub.alarm_subscription_id,
        "consumerSubscriptionId": sub.consumer_subscription_id,
        "globalCloudId": cloud.global_cloud_id,
        "globalCloudID": cloud.global_cloud_id,
        "notificationEventType": event as i64,
        "objectRef": object_ref(cloud, id),
    });
    if let (Value::Object(out), Value::Object(rec)) = (&mut out, record) {
        for (k, v) in rec {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Queues the notification of `event` on `record` for every subscription that wants it, on
/// `conn` (the caller's write transaction), due at `now`. Returns how many were queued.
///
/// # Errors
/// The store failed.
pub async fn enqueue(
    conn: &mut AnyConnection,
    cloud: &CloudSettings,
    record: &Value,
    event: EventType,
    now: i64,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for sub in alarm_subscriptions::list_on(conn).await? {
        if !sub.wants(event, record) {
            continue;
        }
        sqlx::query(
            "INSERT INTO o2ims_alarm_notifications \
             (subscription_id, body, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, 0, $3, $3)",
        )
        .bind(sub.alarm_subscription_id.to_string())
        .bind(body(cloud, &sub, record, event).to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// A queued notification that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Row id.
    pub id: i64,
    /// Its subscription.
    pub subscription_id: String,
    /// Where to POST it.
    pub callback: String,
    /// The JSON body.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: i64,
    /// When it was due (the claim's compare value).
    pub next_attempt_at: i64,
}

type QueuedRow = (i64, String, String, String, i64, i64);

/// The due head of each subscription's queue, oldest first, at most `limit`.
///
/// # Errors
/// The store failed.
pub async fn due_heads(db: &Db, now: i64, limit: i64) -> Result<Vec<Queued>, StoreError> {
    let rows: Vec<QueuedRow> = sqlx::query_as(
        "SELECT n.id, n.subscription_id, s.callback, n.body, n.attempts, n.next_attempt_at \
         FROM o2ims_alarm_notifications n \
         JOIN o2ims_alarm_subscriptions s ON s.id = n.subscription_id \
         WHERE n.id IN (SELECT MIN(id) FROM o2ims_alarm_notifications GROUP BY subscription_id) \
         AND n.next_attempt_at <= $1 ORDER BY n.id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, subscription_id, callback, body, attempts, next_attempt_at)| Queued {
                id,
                subscription_id,
                callback,
                body,
                attempts,
                next_attempt_at,
            },
        )
        .collect())
}

/// Claims `q` until `now` + [`delivery::CLAIM_LEASE`]; false when another sender got it first.
///
/// # Errors
/// The store failed.
pub async fn claim(db: &Db, q: &Queued, now: i64) -> Result<bool, StoreError> {
    let lease = i64::try_from(delivery::CLAIM_LEASE.as_millis()).unwrap_or(30_000);
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE o2ims_alarm_notifications SET next_attempt_at = $1 \
         WHERE id = $2 AND next_attempt_at = $3",
    )
    .bind(now.saturating_add(lease))
    .bind(q.id)
    .bind(q.next_attempt_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Records the outcome of sending `q` at `now`: deletes it when delivered, else counts the
/// attempt and schedules the next one ([`delivery::backoff_ms`]).
///
/// # Errors
/// The store failed (the claim then expires and the notification is sent again).
pub async fn record(
    db: &Db,
    q: &Queued,
    outcome: &Result<(), String>,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write().await?;
    match outcome {
        Ok(()) => {
            sqlx::query("DELETE FROM o2ims_alarm_notifications WHERE id = $1")
                .bind(q.id)
                .execute(&mut *tx)
                .await?;
        }
        Err(e) => {
            let attempts = q.attempts.saturating_add(1);
            sqlx::query(
                "UPDATE o2ims_alarm_notifications SET attempts = $1, next_attempt_at = $2, \
                 last_error = $3 WHERE id = $4",
            )
            .bind(attempts)
            .bind(now.saturating_add(delivery::backoff_ms(attempts)))
            .bind(e.as_str())
            .bind(q.id)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// One delivery round at `now`: claims every due head, sends them concurrently and records
/// the outcomes, waiting for all of them (the synchronous form of [`run_delivery`]).
///
/// # Errors
/// The store failed.
pub async fn deliver_due(
    db: &Db,
    client: &HttpClient,
    now: i64,
) -> Result<delivery::Round, StoreError> {
    let limit = i64::try_from(delivery::MAX_IN_FLIGHT).unwrap_or(32);
    let mut set = JoinSet::new();
    for q in due_heads(db, now, limit).await? {
        if !claim(db, &q, now).await? {
            continue;
        }
        let client = client.clone();
        set.spawn(async move {
            let outcome = delivery::post(&client, &q.callback, &q.body).await;
            (q, outcome)
        });
    }
    let mut round = delivery::Round::default();
    while let Some(joined) = set.join_next().await {
        let Ok((q, outcome)) = joined else { continue };
        record(db, &q, &outcome, now).await?;
        if outcome.is_ok() {
            round.delivered += 1;
        } else {
            round.failed += 1;
        }
    }
    Ok(round)
}

/// Delivers queued alarm notifications until dropped (aborted): polls every
/// [`delivery::POLL`], at most [`delivery::MAX_IN_FLIGHT`] at once, one per subscription.
pub async fn run_delivery(db: Db) {
    let client = delivery::client();
    let mut tick = tokio::time::interval(delivery::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut busy: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
    loop {
        tick.tick().await;
        while let Some(done) = tasks.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            busy.remove(&id);
        }
        let free = delivery::MAX_IN_FLIGHT.saturating_sub(tasks.len());
        if free == 0 {
            continue;
        }
        let in_flight: BTreeSet<String> = busy.values().cloned().collect();
        let now = now_ms();
        let limit = i64::try_from(free + in_flight.len()).unwrap_or(i64::MAX);
        let heads = match due_heads(&db, now, limit).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("o2ims alarm notification queue unreadable (retrying): {e}");
                continue;
            }
        };
        for q in heads
            .into_iter()
            .filter(|q| !in_flight.contains(&q.subscription_id))
            .take(free)
        {
            match claim(&db, &q, now).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!("o2ims alarm notification claim failed (retrying): {e}");
                    continue;
                }
            }
            let sub = q.subscription_id.clone();
            let db = db.clone();
            let client = client.clone();
            let handle = tasks.spawn(async move {
                let outcome = delivery::post(&client, &q.callback, &q.body).await;
                if let Err(e) = &outcome {
                    tracing::debug!(subscription = %q.subscription_id, attempts = q.attempts + 1,
                        "o2ims alarm notification not delivered: {e}");
                }
                if let Err(e) = record(&db, &q, &outcome, now_ms()).await {
                    tracing::warn!("o2ims alarm notification outcome not recorded: {e}");
                }
            });
            busy.insert(handle.id(), sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(&e.name().to_lowercase()), Some(e));
        }
        assert_eq!(EventType::parse("MODIFY"), None);
        assert_eq!(EventType::Acknowledge as i64, 3);
    }
}
