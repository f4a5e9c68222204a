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

use serde_json::{Value, json};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::alarm_subscriptions::{self, AlarmSubscription};
use crate::db::{Db, StoreError};
use crate::o2ims::CloudSettings;
use crate::o2ims::delivery::{self, HttpClient, Queue};

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

/// The alarm notification queue (`o2ims_alarm_notifications` of `o2ims_alarm_subscriptions`).
pub const QUEUE: Queue = Queue::new(
    "o2ims_alarm_notifications",
    "o2ims_alarm_subscriptions",
    "o2ims alarm notification",
);

/// One delivery round at `now` of the alarm queue ([`Queue::deliver_due`]): claims every due
/// head, sends them concurrently and records the outcomes, waiting for all of them (the
/// synchronous form of [`run_delivery`]).
///
/// # Errors
/// The store failed.
pub async fn deliver_due(
    db: &Db,
    client: &HttpClient,
    now: i64,
) -> Result<delivery::Round, StoreError> {
    QUEUE.deliver_due(db, client, now).await
}

/// Delivers queued alarm notifications until dropped (aborted): polls every
/// [`delivery::POLL`], at most [`delivery::MAX_IN_FLIGHT`] at once, one per subscription.
pub async fn run_delivery(db: Db) {
    QUEUE.run_delivery(db).await;
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
