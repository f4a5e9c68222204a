//! The store side of worker identities: the rows an enrolment writes (`workers`,
//! `worker_certs`), the standing of a presented certificate, and revocation
//! (`ims-control worker revoke ID`).
//!
//! A certificate is accepted only when its serial is recorded for the worker its SAN names and
//! neither the certificate nor the worker is revoked ([`standing`]). Revoking marks the worker
//! (`workers.revoked = 1`) and all its certificates, and bumps the `revoke_rev` counter so live
//! sessions on every replica re-check within a poll interval ([`revoke`]).

use std::collections::BTreeSet;

use sqlx::{AnyConnection, Row};

use crate::db::{Db, StoreError};
use crate::store::sites::is_id;
use crate::uplink::ca::IssuedCert;
use crate::uplink::identity::{PeerIdentity, worker_id_candidate};
use crate::uplink::revs;

/// The first of `base`, `base-2`, `base-3`, … not in `taken`.
#[must_use]
pub fn first_free(base: &str, taken: &BTreeSet<String>) -> String {
    (1..)
        .map(|n| worker_id_candidate(base, n))
        .find(|id| !taken.contains(id))
        .unwrap_or_else(|| base.to_owned())
}

/// A worker id derived from `base` that no worker has yet (see [`first_free`]). Run it in the
/// enrolment's write transaction, which then inserts the worker.
///
/// # Errors
/// The store failed.
pub async fn allocate_worker_id(
    conn: &mut AnyConnection,
    base: &str,
) -> Result<String, StoreError> {
    let rows =
        sqlx::query("SELECT worker_id FROM workers WHERE worker_id = $1 OR worker_id LIKE $2")
            .bind(base)
            .bind(format!("{base}-%"))
            .fetch_all(&mut *conn)
            .await?;
    let taken = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(first_free(base, &taken))
}

/// Inserts a newly enrolled worker: status `inactive` until its first session, no heartbeat.
///
/// # Errors
/// The worker id is taken (409), the site is gone, or the store failed.
pub async fn insert_worker(
    conn: &mut AnyConnection,
    worker_id: &str,
    site_id: i64,
    version: &str,
    ip_address: Option<String>,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO workers (worker_id, site_id, ip_address, version, status, registered_at) \
         VALUES ($1, $2, $3, $4, 'inactive', $5)",
    )
    .bind(worker_id)
    .bind(site_id)
    .bind(ip_address)
    .bind(version)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a certificate issued to `worker_id`.
///
/// # Errors
/// The store failed.
pub async fn insert_cert(
    conn: &mut AnyConnection,
    worker_id: &str,
    cert: &IssuedCert,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO worker_certs (worker_id, serial, not_before, not_after, issued_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(worker_id)
    .bind(cert.serial.as_str())
    .bind(cert.not_before_ms)
    .bind(cert.not_after_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether a presented certificate may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Recorded, for this worker, nothing revoked.
    Good {
        /// The worker's site (`None` when the site was deleted).
        site_id: Option<i64>,
    },
    /// The certificate or its worker was revoked.
    Revoked,
    /// No certificate with this serial was issued (or its worker was deleted).
    Unknown,
    /// The serial was issued to another worker than the certificate names.
    Mismatch,
}

impl Standing {
    /// Why a certificate that is not [`Standing::Good`] is refused, for the edge.
    #[must_use]
    pub fn refusal(&self, worker_id: &str) -> Option<String> {
        match self {
            Self::Good { .. } => None,
            Self::Revoked => Some(format!(
                "worker `{worker_id}` (or this certificate) was revoked; enrol the edge again \
                 with a new join token"
            )),
            Self::Unknown => Some(format!(
                "this certificate of worker `{worker_id}` is not on record at the control \
                 plane; enrol the edge again with a new join token"
            )),
            Self::Mismatch => Some(format!(
                "this certificate's serial was issued to another worker than `{worker_id}`; \
                 enrol the edge again"
            )),
        }
    }
}

/// The standing of the certificate `id` was read from.
///
/// # Errors
/// The store failed.
pub async fn standing(db: &Db, id: &PeerIdentity) -> Result<Standing, StoreError> {
    let row = sqlx::query(
        "SELECT c.worker_id, c.revoked, w.revoked, w.site_id FROM worker_certs c \
         JOIN workers w ON w.worker_id = c.worker_id WHERE c.serial = $1",
    )
    .bind(id.serial.as_str())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Standing::Unknown);
    };
    let owner: String = row.try_get(0)?;
    let cert_revoked: i64 = row.try_get(1)?;
    let worker_revoked: i64 = row.try_get(2)?;
    if owner != id.worker_id {
        return Ok(Standing::Mismatch);
    }
    if cert_revoked != 0 || worker_revoked != 0 {
        return Ok(Standing::Revoked);
    }
    Ok(Standing::Good {
        site_id: row.try_get(3)?,
    })
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The worker's `worker_id`.
    pub worker_id: String,
    /// Certificates newly marked revoked.
    pub certificates: u64,
    /// Whether the worker was revoked already.
    pub already: bool,
}

/// Revokes the worker `key` (its row id, or its `worker_id`) and every certificate issued to
/// it, and bumps `revoke_rev` so live sessions drop it.
///
/// # Errors
/// [`StoreError::NotFound`] when no worker matches; the store failed.
pub async fn revoke(db: &Db, key: &str, now_ms: i64) -> Result<Revocation, StoreError> {
    let key = key.trim();
    let mut tx = db.begin_write().await?;
    let mut row = None;
    if is_id(key) {
        if let Ok(id) = key.parse::<i64>() {
            row = sqlx::query("SELECT worker_id, revoked FROM workers WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        }
    }
    if row.is_none() {
        row = sqlx::query("SELECT worker_id, revoked FROM workers WHERE worker_id = $1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    }
    let row = row.ok_or_else(|| StoreError::NotFound(format!("worker `{key}`")))?;
    let worker_id: String = row.try_get(0)?;
    let already = row.try_get::<i64, _>(1)? != 0;
    sqlx::query("UPDATE workers SET revoked = 1 WHERE worker_id = $1")
        .bind(worker_id.as_str())
        .execute(&mut *tx)
        .await?;
    let certs = sqlx::query(
        "UPDATE worker_certs SET revoked = 1, revoked_at = $1 \
         WHERE worker_id = $2 AND revoked = 0",
    )
    .bind(now_ms)
    .bind(worker_id.as_str())
    .execute(&mut *tx)
    .await?;
    revs::bump(&mut tx, revs::REVOKE_REV_KEY).await?;
    tx.commit().await?;
    Ok(Revocation {
        worker_id,
        certificates: certs.rows_affected(),
        already,
    })
}

/// The name of site `site_id`, if it exists.
///
/// # Errors
/// The store failed.
pub async fn site_name(
    conn: &mut AnyConnection,
    site_id: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM sites WHERE id = $1")
        .bind(site_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(n,)| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_free_id_gets_a_numeric_suffix() {
        let mut taken = BTreeSet::new();
        assert_eq!(first_free("lab-edge", &taken), "lab-edge");
        taken.insert("lab-edge".to_owned());
        assert_eq!(first_free("lab-edge", &taken), "lab-edge-2");
        taken.insert("lab-edge-2".to_owned());
        taken.insert("lab-edge-4".to_owned());
        assert_eq!(first_free("lab-edge", &taken), "lab-edge-3");
    }

    #[test]
    fn refusals_name_the_worker_and_the_remedy() {
        assert_eq!(Standing::Good { site_id: None }.refusal("w"), None);
        for s in [Standing::Revoked, Standing::Unknown, Standing::Mismatch] {
            let m = s.refusal("lab-edge").unwrap_or_default();
            assert!(m.contains("`lab-edge`") && m.contains("enrol"), "{m}");
        }
    }
}
