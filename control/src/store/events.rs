//! Store queries of `machine_events`: the provisioning events edges report (DHCP lease, boot
//! file transfers, phone-home, errors, …).
//!
//! Events are linked to a machine by MAC when they are recorded (`machine_id` is NULL while no
//! machine has that MAC, and is filled in when one is created or given that MAC later). Each
//! event may carry an `event_id`; recording the same `event_id` twice stores it once, so edges
//! can resend after a lost acknowledgement.

use ims_proto::MacAddr;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::api::page::PageRequest;
use crate::db::{Db, StoreError};
use crate::store::clusters::{Bind, Conditions, count_and_page};

/// Longest event kind, event id or worker id accepted.
pub const MAX_KEY_LEN: usize = 128;

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The machine's boot interface MAC.
    pub mac: MacAddr,
    /// The edge that saw it.
    pub worker_id: Option<String>,
    /// Idempotency key, unique across all events (a repeat is ignored).
    pub event_id: Option<String>,
    /// What happened: `lease`, `transfer_started`, `transfer_completed`, `transfer_failed`,
    /// `phone_home`, `error`, `status`, … (see [`valid_kind`]).
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Structured details (stored as JSON text).
    pub detail: serde_json::Value,
    /// When it happened (Unix ms).
    pub at_ms: i64,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `machine_events.id`.
    pub id: i64,
    /// The machine with this MAC, if one was known.
    pub machine_id: Option<i64>,
    /// The MAC as reported (canonical form).
    pub mac: String,
    /// The edge that saw it.
    pub worker_id: Option<String>,
    /// Idempotency key.
    pub event_id: Option<String>,
    /// What happened.
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Structured details.
    pub detail: serde_json::Value,
    /// When it happened (Unix ms).
    pub at_ms: i64,
}

/// Whether `kind` is an acceptable event kind: 1–128 characters of letters, digits, `_`, `-`,
/// `.` and `:`.
#[must_use]
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KEY_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn invalid(field: &str, message: String) -> StoreError {
    StoreError::InvalidReference {
        field: field.to_owned(),
        message,
    }
}

/// Records `ev`, linked to the machine with its MAC if there is one. Returns the new row's id,
/// or `None` when an event with the same `event_id` is already stored (not an error).
///
/// # Errors
/// The kind or a key is malformed (`InvalidReference` naming the field), or the store failed.
pub async fn record_event<'c, E: Executor<'c, Database = Any>>(
    e: E,
    ev: &NewEvent,
) -> Result<Option<i64>, StoreError> {
    if !valid_kind(&ev.kind) {
        return Err(invalid(
            "kind",
            format!(
                "event kind `{}` is not 1-{MAX_KEY_LEN} letters, digits, `_`, `-`, `.` or `:`",
                ev.kind
            ),
        ));
    }
    for (field, value) in [("event_id", &ev.event_id), ("worker_id", &ev.worker_id)] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_KEY_LEN) {
            return Err(invalid(
                field,
                format!("{field} is longer than {MAX_KEY_LEN} bytes"),
            ));
        }
    }
    let row = sqlx::query(
        "INSERT INTO machine_events (machine_id, mac, worker_id, event_id, kind, message, \
         detail, at) \
         VALUES ((SELECT id FROM machines WHERE mac = $1), $1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (event_id) DO NOTHING RETURNING id",
    )
    .bind(ev.mac.to_string())
    .bind(ev.worker_id.clone())
    .bind(ev.event_id.clone())
    .bind(ev.kind.clone())
    .bind(ev.message.clone())
    .bind(ev.detail.to_string())
    .bind(ev.at_ms)
    .fetch_optional(e)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Links the unlinked events of `mac` to machine `machine_id` (after it was created or given
/// that MAC). Returns how many were linked.
///
/// # Errors
/// The store failed.
pub async fn link_to_machine<'c, E: Executor<'c, Database = Any>>(
    e: E,
    machine_id: i64,
    mac: MacAddr,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE machine_events SET machine_id = $1 WHERE mac = $2 AND machine_id IS NULL",
    )
    .bind(machine_id)
    .bind(mac.to_string())
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

fn decode(row: &AnyRow) -> Result<Event, StoreError> {
    let detail: String = row.try_get(7)?;
    Ok(Event {
        id: row.try_get(0)?,
        machine_id: row.try_get(1)?,
        mac: row.try_get(2)?,
        worker_id: row.try_get(3)?,
        event_id: row.try_get(4)?,
        kind: row.try_get(5)?,
        message: row.try_get(6)?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        at_ms: row.try_get(8)?,
    })
}

/// One page of machine `machine_id`'s events, newest first, optionally only those of `kind`
/// (case-insensitive), and the total count.
///
/// # Errors
/// The store failed.
pub async fn list_events(
    db: &Db,
    machine_id: i64,
    kind: Option<&str>,
    page: PageRequest,
) -> Result<(i64, Vec<Event>), StoreError> {
    let mut c = Conditions::default();
    c.push("machine_id = ?", Bind::Int(machine_id));
    if let Some(kind) = kind {
        c.push("LOWER(kind) = LOWER(?)", Bind::Text(kind.to_owned()));
    }
    count_and_page(
        db,
        "machine_events",
        "SELECT id, machine_id, mac, worker_id, event_id, kind, message, detail, at \
         FROM machine_events",
        "at DESC, id DESC",
        &c,
        page,
        decode,
    )
    .await
}
