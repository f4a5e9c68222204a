//! OAuth2 clients of the O2ims API (the client-credentials grant of `POST /oauth/token`).
//!
//! A client has an id (its name, lower case: `ims-control client add NAME`), an argon2id hash
//! of its secret, the O2ims scopes it was granted, a description and its creation time. The
//! secret is random ([`SECRET_BYTES`] bytes from the OS, as hex), shown once by the CLI and
//! never stored or logged; only its hash is kept (table `oauth_clients`, migration 0006).

use sqlx::AnyConnection;

use crate::auth::jwt::random_hex;
use crate::auth::scope::{Scope, UnknownScope};
use crate::db::{Db, StoreError, now_ms};

/// Random bytes in a client secret (shown as twice as many hex digits).
pub const SECRET_BYTES: usize = 32;
/// Longest client id.
pub const CLIENT_ID_MAX: usize = 64;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 1024;

/// An OAuth2 client, without its secret hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client id (lower case).
    pub client_id: String,
    /// The granted scopes, in [`Scope::ALL`] order.
    pub scopes: Vec<Scope>,
    /// Free text.
    pub description: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Secret last set (Unix ms).
    pub updated_at: i64,
}

/// A new random client secret (64 hex digits, 256 bits).
#[must_use]
pub fn generate_secret() -> String {
    random_hex(SECRET_BYTES)
}

/// Checks a client id and returns it in lower case: 1–64 characters of `a–z 0–9 . _ -`
/// (upper-case letters are accepted and lowered).
///
/// # Errors
/// What is wrong and what is accepted.
pub fn normalize_client_id(id: &str) -> Result<String, String> {
    let len = id.chars().count();
    if len == 0 || len > CLIENT_ID_MAX {
        return Err(format!(
            "must be 1 to {CLIENT_ID_MAX} characters long (got {len})"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use only letters, digits and . _ -"
        ));
    }
    Ok(id.to_ascii_lowercase())
}

/// Parses space-separated (or comma-separated) scope names into a sorted, duplicate-free list.
///
/// # Errors
/// A name is not a scope.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, UnknownScope> {
    let mut scopes = text
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Scope>, _>>()?;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// The scopes as the space-separated text of the `scope` claim and column.
#[must_use]
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

type Row = (String, String, String, i64, i64);

fn from_row((client_id, scopes, description, created_at, updated_at): Row) -> Client {
    // Stored scopes were validated on write; an unknown one (a newer version's) is skipped.
    let scopes = scopes
        .split(' ')
        .filter_map(|s| s.parse().ok())
        .collect::<Vec<Scope>>();
    Client {
        client_id,
        scopes,
        description,
        created_at,
        updated_at,
    }
}

const COLUMNS: &str = "client_id, scopes, description, created_at, updated_at";

/// Creates a client with the hash of its secret; 409-style [`StoreError::Conflict`] on `client_id`
/// when it exists.
///
/// # Errors
/// The id is taken, or the store failed.
pub async fn create(
    conn: &mut AnyConnection,
    client_id: &str,
    secret_hash: &str,
    scopes: &[Scope],
    description: &str,
) -> Result<Client, StoreError> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO oauth_clients \
         (client_id, secret_hash, scopes, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(client_id)
    .bind(secret_hash)
    .bind(scopes_text(scopes))
    .bind(description)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict {
            field: "client_id".to_owned(),
            message: format!("client `{client_id}` already exists"),
        });
    }
    Ok(Client {
        client_id: client_id.to_owned(),
        scopes: scopes.to_vec(),
        description: description.to_owned(),
        created_at: now,
        updated_at: now,
    })
}

/// Every client, by id.
///
/// # Errors
/// The store failed.
pub async fn list(db: &Db) -> Result<Vec<Client>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM oauth_clients ORDER BY client_id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One client (matched case-insensitively).
///
/// # Errors
/// The store failed.
pub async fn get(db: &Db, client_id: &str) -> Result<Option<Client>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM oauth_clients WHERE client_id = LOWER($1)"
    ))
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(from_row))
}

/// One client and its secret hash, for authentication.
///
/// # Errors
/// The store failed.
pub async fn with_secret_hash(
    db: &Db,
    client_id: &str,
) -> Result<Option<(Client, String)>, StoreError> {
    let row: Option<(String, String, String, i64, i64, String)> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, secret_hash FROM oauth_clients WHERE client_id = LOWER($1)"
    ))
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(id, scopes, desc, created, updated, hash)| {
        (from_row((id, scopes, desc, created, updated)), hash)
    }))
}

/// Replaces a client's secret hash; false when there is no such client.
///
/// # Errors
/// The store failed.
pub async fn set_secret_hash(db: &Db, client_id: &str, hash: &str) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE oauth_clients SET secret_hash = $1, updated_at = $2 WHERE client_id = LOWER($3)",
    )
    .bind(hash)
    .bind(now_ms())
    .bind(client_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a client (its tokens stop working at once: every O2ims request re-reads the
/// client); false when there was none.
///
/// # Errors
/// The store failed.
pub async fn delete(db: &Db, client_id: &str) -> Result<bool, StoreError> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query("DELETE FROM oauth_clients WHERE client_id = LOWER($1)")
        .bind(client_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// The clients as a table for `ims-control client list` (no secrets: the store has none).
#[must_use]
pub fn table(list: &[Client]) -> String {
    let width = list
        .iter()
        .map(|c| c.client_id.len())
        .max()
        .unwrap_or(0)
        .max("CLIENT_ID".len());
    let mut lines = vec![format!(
        "{:<width$} {:<44} {:<24} DESCRIPTION",
        "CLIENT_ID", "SCOPES", "CREATED"
    )];
    for c in list {
        lines.push(format!(
            "{:<width$} {:<44} {:<24} {}",
            c.client_id,
            scopes_text(&c.scopes),
            crate::db::format_ts(c.created_at),
            c.description
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_scopes() {
        assert_eq!(normalize_client_id("FOCOM-1").unwrap(), "focom-1");
        assert!(normalize_client_id("").is_err());
        assert!(normalize_client_id("a b").is_err());
        assert!(normalize_client_id(&"x".repeat(65)).is_err());
        assert_eq!(
            parse_scopes("o2ims:subscribe o2ims:read,o2ims:read").unwrap(),
            vec![Scope::Read, Scope::Subscribe]
        );
        assert!(parse_scopes("o2ims:read admin").is_err());
        assert_eq!(
            scopes_text(&[Scope::Read, Scope::Alarms]),
            "o2ims:read o2ims:alarms"
        );
        let s = generate_secret();
        assert_eq!(s.len(), SECRET_BYTES * 2);
        assert_ne!(s, generate_secret());
    }
}
