//! Delivery of the queued inventory notifications (`o2ims_notifications`) to their callbacks.
//!
//! Each subscription's queue is delivered in order, one notification at a time: the oldest
//! queued notification of a subscription (its head) is claimed once it is due (its
//! `next_attempt_at` is moved [`CLAIM_LEASE`] ahead with a compare-and-set, so one replica
//! sends it), POSTed as JSON with a [`SEND_TIMEOUT`], and then deleted on a 2xx answer or
//! rescheduled with exponential backoff ([`backoff_ms`]: 1 s doubling to 5 min) and its error
//! kept in `last_error`. A notification is only ever removed after a 2xx or with its
//! subscription. A slow or dead callback delays only its own subscription: deliveries run in
//! their own tasks, at most [`MAX_IN_FLIGHT`] at once, apart from the API.
//!
//! Callbacks are HTTP/1.1 over `http://` or `https://` (rustls with the `ring` provider, TLS
//! 1.2 and 1.3). HTTPS callbacks are verified against the system's trusted roots (read once,
//! with `rustls-native-certs`) plus the CAs given with `--callback-ca FILE` (`IMS_CALLBACK_CA`,
//! [`trust_callback_cas`]); a callback whose certificate does not verify is not delivered and
//! is retried like any other failure (its `last_error` says why).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinSet;

use crate::db::{Db, StoreError, now_ms};

/// How long one POST (connect, send, answer) may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How far a claim moves `next_attempt_at` (a replica dying mid-send is retried after this).
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// First retry delay.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Deliveries in flight at once (per process).
pub const MAX_IN_FLIGHT: usize = 32;
/// How often the queue is polled.
pub const POLL: Duration = Duration::from_millis(200);

/// The HTTP(S) client used for callbacks.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Extra CAs trusted for HTTPS callbacks (`--callback-ca`), set once at start.
static CALLBACK_CAS: RwLock<Vec<CertificateDer<'static>>> = RwLock::new(Vec::new());

/// Trusts `certs` (besides the system roots) for the HTTPS callbacks of every [`client()`]
/// made afterwards.
pub fn trust_callback_cas(certs: Vec<CertificateDer<'static>>) {
    *CALLBACK_CAS.write().unwrap_or_else(PoisonError::into_inner) = certs;
}

/// Reads the PEM certificates of a CA file (for `--callback-ca` and `--smo-ca`).
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no `BEGIN CERTIFICATE` block; give a PEM CA certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The system's trusted roots, read once (unreadable ones are skipped with a warning).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::warn!(
                "some system CA certificates could not be read ({} errors); HTTPS callbacks \
                 use the rest",
                found.errors.len()
            );
        }
        found.certs
    })
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting the system roots and
/// `extra`.
#[must_use]
pub fn tls_config(extra: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!("{ignored} system CA certificates are not usable by rustls");
    }
    for cert in extra {
        if let Err(e) = roots.add(cert.clone()) {
            tracing::warn!("a configured CA certificate is not usable: {e}");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider supports the default versions; this branch is not taken.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// A client for `http://` and `https://` URLs trusting the system roots and `extra`
/// (HTTP/1.1, connections kept alive per host).
#[must_use]
pub fn client_trusting(extra: &[CertificateDer<'static>]) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(SEND_TIMEOUT));
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(extra))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// A new callback client: `http://` and `https://` (the system roots plus the CAs of
/// [`trust_callback_cas`]).
#[must_use]
pub fn client() -> HttpClient {
    let extra = CALLBACK_CAS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    client_trusting(&extra)
}

/// The delay before retry number `attempts` (1 after the first failure): 1 s, 2 s, 4 s, …,
/// at most 5 min.
#[must_use]
pub fn backoff_ms(attempts: i64) -> i64 {
    let first = i64::try_from(FIRST_BACKOFF.as_millis()).unwrap_or(1000);
    let max = i64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(300_000);
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    first.saturating_mul(1_i64 << shift).min(max)
}

/// POSTs `body` to `callback`; Ok on a 2xx answer within [`SEND_TIMEOUT`].
///
/// # Errors
/// Why it was not delivered (for `last_error`).
pub async fn post(client: &HttpClient, callback: &str, body: &str) -> Result<(), String> {
    let request = Request::post(callback)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| format!("bad callback request: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("cannot reach the callback: {}", error_chain(&e)))?;
        let status = response.status();
        // Read the answer so the connection can be reused; its content does not matter.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the callback answered {status}"))
        }
    };
    match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the callback did not answer within {} s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

/// An error and its causes (a TLS failure is only in the causes of the client's error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

/// What one [`deliver_due`] round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Delivered (2xx) and removed.
    pub delivered: usize,
    /// Failed and rescheduled.
    pub failed: usize,
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

/// A durable notification queue: the table of queued notifications (`id`, `subscription_id`,
/// `body`, `attempts`, `next_attempt_at`, `last_error`) and the table of the subscriptions
/// they belong to (whose `callback` they are sent to). The inventory's is [`INVENTORY_QUEUE`],
/// the alarms' is [`crate::o2ims::monitoring::notify::QUEUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    table: &'static str,
    subscriptions: &'static str,
    what: &'static str,
}

/// The inventory change notifications (`o2ims_notifications` of `o2ims_subscriptions`).
pub const INVENTORY_QUEUE: Queue = Queue::new(
    "o2ims_notifications",
    "o2ims_subscriptions",
    "o2ims notification",
);

impl Queue {
    /// The queue of notifications in `table` for the subscriptions in `subscriptions`; `what`
    /// names its notifications in log messages. Both tables are fixed names, never input.
    #[must_use]
    pub const fn new(table: &'static str, subscriptions: &'static str, what: &'static str) -> Self {
        Self {
            table,
            subscriptions,
            what,
        }
    }

    /// The due head of each subscription's queue, oldest first, at most `limit`.
    ///
    /// # Errors
    /// The store failed.
    pub async fn due_heads(self, db: &Db, now: i64, limit: i64) -> Result<Vec<Queued>, StoreError> {
        let Self {
            table,
            subscriptions,
            ..
        } = self;
        let sql = format!(
            "SELECT n.id, n.subscription_id, s.callback, n.body, n.attempts, n.next_attempt_at \
             FROM {table} n JOIN {subscriptions} s ON s.id = n.subscription_id \
             WHERE n.id IN (SELECT MIN(id) FROM {table} GROUP BY subscription_id) \
             AND n.next_attempt_at <= $1 ORDER BY n.id LIMIT $2"
        );
        let rows: Vec<QueuedRow> = sqlx::query_as(&sql)
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

    /// Claims `q` until `now` + [`CLAIM_LEASE`]; false when another sender got it first.
    ///
    /// # Errors
    /// The store failed.
    pub async fn claim(self, db: &Db, q: &Queued, now: i64) -> Result<bool, StoreError> {
        let lease = i64::try_from(CLAIM_LEASE.as_millis()).unwrap_or(30_000);
        let sql = format!(
            "UPDATE {} SET next_attempt_at = $1 WHERE id = $2 AND next_attempt_at = $3",
            self.table
        );
        let mut tx = db.begin_write().await?;
        let done = sqlx::query(&sql)
            .bind(now.saturating_add(lease))
            .bind(q.id)
            .bind(q.next_attempt_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the outcome of sending `q` at `now`: deletes it when delivered, else counts the
    /// attempt and schedules the next one ([`backoff_ms`]).
    ///
    /// # Errors
    /// The store failed (the claim then expires and the notification is sent again).
    pub async fn record(
        self,
        db: &Db,
        q: &Queued,
        outcome: &Result<(), String>,
        now: i64,
    ) -> Result<(), StoreError> {
        let table = self.table;
        let mut tx = db.begin_write().await?;
        match outcome {
            Ok(()) => {
                sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
                    .bind(q.id)
                    .execute(&mut *tx)
                    .await?;
            }
            Err(e) => {
                let attempts = q.attempts.saturating_add(1);
                sqlx::query(&format!(
                    "UPDATE {table} SET attempts = $1, next_attempt_at = $2, \
                     last_error = $3 WHERE id = $4"
                ))
                .bind(attempts)
                .bind(now.saturating_add(backoff_ms(attempts)))
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
    /// the outcomes (at `now`), waiting for all of them. The background task
    /// ([`Queue::run_delivery`]) does the same without waiting; this is its synchronous form.
    ///
    /// # Errors
    /// The store failed.
    pub async fn deliver_due(
        self,
        db: &Db,
        client: &HttpClient,
        now: i64,
    ) -> Result<Round, StoreError> {
        let limit = i64::try_from(MAX_IN_FLIGHT).unwrap_or(32);
        let mut set = JoinSet::new();
        for q in self.due_heads(db, now, limit).await? {
            if !self.claim(db, &q, now).await? {
                continue;
            }
            let client = client.clone();
            set.spawn(async move {
                let outcome = post(&client, &q.callback, &q.body).await;
                (q, outcome)
            });
        }
        let mut round = Round::default();
        while let Some(joined) = set.join_next().await {
            let Ok((q, outcome)) = joined else { continue };
            self.record(db, &q, &outcome, now).await?;
            if outcome.is_ok() {
                round.delivered += 1;
            } else {
                round.failed += 1;
            }
        }
        Ok(round)
    }

    /// Delivers the queued notifications until dropped (aborted): polls every [`POLL`], at
    /// most [`MAX_IN_FLIGHT`] at once, one per subscription at a time.
    pub async fn run_delivery(self, db: Db) {
        let what = self.what;
        let client = client();
        let mut tick = tokio::time::interval(POLL);
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
            let free = MAX_IN_FLIGHT.saturating_sub(tasks.len());
            if free == 0 {
                continue;
            }
            let in_flight: BTreeSet<String> = busy.values().cloned().collect();
            let now = now_ms();
            let limit = i64::try_from(free + in_flight.len()).unwrap_or(i64::MAX);
            let heads = match self.due_heads(&db, now, limit).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("{what} queue unreadable (retrying): {e}");
                    continue;
                }
            };
            for q in heads
                .into_iter()
                .filter(|q| !in_flight.contains(&q.subscription_id))
                .take(free)
            {
                match self.claim(&db, &q, now).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!("{what} claim failed (retrying): {e}");
                        continue;
                    }
                }
                let sub = q.subscription_id.clone();
                let db = db.clone();
                let client = client.clone();
                let handle = tasks.spawn(async move {
                    let outcome = post(&client, &q.callback, &q.body).await;
                    if let Err(e) = &outcome {
                        tracing::debug!(subscription = %q.subscription_id,
                            attempts = q.attempts + 1, "{what} not delivered: {e}");
                    }
                    if let Err(e) = self.record(&db, &q, &outcome, now_ms()).await {
                        tracing::warn!("{what} outcome not recorded: {e}");
                    }
                });
                busy.insert(handle.id(), sub);
            }
        }
    }
}

/// One round of the inventory queue ([`INVENTORY_QUEUE`], see [`Queue::deliver_due`]).
///
/// # Errors
/// The store failed.
pub async fn deliver_due(db: &Db, client: &HttpClient, now: i64) -> Result<Round, StoreError> {
    INVENTORY_QUEUE.deliver_due(db, client, now).await
}

/// Delivers queued inventory notifications until dropped (aborted), at most
/// [`MAX_IN_FLIGHT`] at once, one per subscription at a time ([`Queue::run_delivery`]).
pub async fn run_delivery(db: Db) {
    INVENTORY_QUEUE.run_delivery(db).await;
}

pub use super::Tasks;

/// Starts change detection and delivery on the current Tokio runtime.
#[must_use]
pub fn spawn(db: &Db) -> Tasks {
    Tasks::new(vec![
        tokio::spawn(super::changes::run_detector(db.clone())),
        tokio::spawn(run_delivery(db.clone())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(3), 4000);
        assert_eq!(backoff_ms(9), 256_000);
        assert_eq!(backoff_ms(10), 300_000);
        assert_eq!(backoff_ms(1000), 300_000);
    }
}
