//! Users: accounts that log in to the API, UI and CLI, each `admin` or `viewer`.
//!
//! Usernames are unique case-insensitively and match case-insensitively at login. Password
//! hashes never leave this module except through [`by_username`] (for verification). The
//! last admin can be neither deleted nor demoted: [`update`] and [`delete`] serialise on a
//! lock row (`settings.users_lock`) before counting admins, so two concurrent requests on
//! PostgreSQL cannot remove the last two admins at once.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{Db, StoreError};
use crate::model::UserRole;

/// Longest username.
pub const USERNAME_MAX: usize = 150;
/// Shortest password.
pub const PASSWORD_MIN: usize = 8;
/// Longest password (bounds hashing work per request).
pub const PASSWORD_MAX: usize = 1024;
/// The user created on first start.
pub const FIRST_ADMIN: &str = "admin";

/// A user, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `users.id`.
    pub id: i64,
    /// The login name.
    pub username: String,
    /// What the user may do.
    pub role: UserRole,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last changed (Unix ms).
    pub updated_at: i64,
}

/// What an update changes (`None` keeps the current value).
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// A new password hash.
    pub password_hash: Option<String>,
    /// A new role.
    pub role: Option<UserRole>,
}

/// Checks a username: 1–150 characters of `A–Z a–z 0–9 @ . + _ -`.
///
/// # Errors
/// What is wrong and what is accepted.
pub fn validate_username(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > USERNAME_MAX {
        return Err(format!(
            "must be 1 to {USERNAME_MAX} characters long (got {len})"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '+' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use only letters, digits and @ . + _ -"
        ));
    }
    Ok(())
}

/// Checks a new password: 8 to 1024 characters.
///
/// # Errors
/// What is wrong and what is accepted.
pub fn validate_password(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < PASSWORD_MIN {
        return Err(format!(
            "must be at least {PASSWORD_MIN} characters long (got {len})"
        ));
    }
    if len > PASSWORD_MAX {
        return Err(format!("must be at most {PASSWORD_MAX} characters long"));
    }
    Ok(())
}

const COLUMNS: &str = "id, username, role, created_at, updated_at";

fn decode(row: &AnyRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: role
            .parse()
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One page of users ordered by id, optionally only those with `role`, and the total count.
///
/// # Errors
/// The store failed.
pub async fn list(
    db: &Db,
    role: Option<UserRole>,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<User>), StoreError> {
    let filter = if role.is_some() {
        " WHERE role = $1"
    } else {
        ""
    };
    let count_sql = format!("SELECT COUNT(*) FROM users{filter}");
    let mut count = sqlx::query_as::<_, (i64,)>(&count_sql);
    if let Some(r) = role {
        count = count.bind(r.as_str());
    }
    let (total,) = count.fetch_one(db.pool()).await?;
    let (lim, off) = if role.is_some() {
        ("$2", "$3")
    } else {
        ("$1", "$2")
    };
    let sql = format!("SELECT {COLUMNS} FROM users{filter} ORDER BY id LIMIT {lim} OFFSET {off}");
    let mut query = sqlx::query(&sql);
    if let Some(r) = role {
        query = query.bind(r.as_str());
    }
    let rows = query.bind(limit).bind(offset).fetch_all(db.pool()).await?;
    let users = rows.iter().map(decode).collect::<Result<_, _>>()?;
    Ok((total, users))
}

/// The number of users.
///
/// # Errors
/// The store failed.
pub async fn count(db: &Db) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await?;
    Ok(n)
}

/// The user with `id`.
///
/// # Errors
/// [`StoreError::NotFound`] or a store failure.
pub async fn get(db: &Db, id: i64) -> Result<User, StoreError> {
    let mut conn = db.pool().acquire().await?;
    get_in(&mut conn, id).await
}

/// The user named `username` (case-insensitively; an exact match wins) and its password hash.
///
/// # Errors
/// The store failed.
pub async fn by_username(db: &Db, username: &str) -> Result<Option<(User, String)>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, password_hash FROM users WHERE LOWER(username) = LOWER($1) \
         ORDER BY CASE WHEN username = $1 THEN 0 ELSE 1 END, id LIMIT 1"
    ))
    .bind(username)
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(row) => Ok(Some((decode(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

/// Creates a user (`username` and the password must be validated, the password hashed).
///
/// # Errors
/// [`StoreError::Conflict`] on `username` when the name is taken (in any letter case).
pub async fn create(
    conn: &mut AnyConnection,
    username: &str,
    password_hash: &str,
    role: UserRole,
    now: i64,
) -> Result<User, StoreError> {
    let taken: Option<(String,)> =
        sqlx::query_as("SELECT username FROM users WHERE LOWER(username) = LOWER($1) LIMIT 1")
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((existing,)) = taken {
        return Err(StoreError::Conflict {
            field: "username".to_owned(),
            message: format!("user `{existing}` already exists"),
        });
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (username, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(User {
        id,
        username: username.to_owned(),
        role,
        created_at: now,
        updated_at: now,
    })
}

/// Creates the first admin ([`FIRST_ADMIN`]) when there are no users at all. Safe when several
/// replicas start at once: the insert does nothing if `admin` appeared meanwhile, and only the
/// replica whose insert took effect gets `true`.
///
/// # Errors
/// The store failed.
pub async fn create_first_admin(
    db: &Db,
    password_hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if count(db).await? > 0 {
        return Ok(false);
    }
    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO users (username, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (username) DO NOTHING RETURNING id",
    )
    .bind(FIRST_ADMIN)
    .bind(password_hash)
    .bind(UserRole::Admin.as_str())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(inserted.is_some())
}

/// Changes a user's password and/or role; refuses to demote the last admin.
///
/// # Errors
/// [`StoreError::NotFound`], [`StoreError::Conflict`] on `role` for the last admin, or a store
/// failure.
pub async fn update(
    conn: &mut AnyConnection,
    id: i64,
    change: UserChange,
    now: i64,
) -> Result<User, StoreError> {
    lock_users(conn).await?;
    let mut user = get_in(conn, id).await?;
    if let Some(role) = change.role {
        if user.role == UserRole::Admin && role != UserRole::Admin {
            ensure_other_admin(conn, &user, "demote").await?;
        }
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id)
            .execute(&mut *conn)
            .await?;
        user.role = role;
    }
    if let Some(hash) = &change.password_hash {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    user.updated_at = now;
    Ok(user)
}

/// Deletes a user; refuses to delete the last admin. Returns the deleted user.
///
/// # Errors
/// [`StoreError::NotFound`], [`StoreError::Conflict`] on `role` for the last admin, or a store
/// failure.
pub async fn delete(conn: &mut AnyConnection, id: i64) -> Result<User, StoreError> {
    lock_users(conn).await?;
    let user = get_in(conn, id).await?;
    if user.role == UserRole::Admin {
        ensure_other_admin(conn, &user, "delete").await?;
    }
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(user)
}

async fn get_in(conn: &mut AnyConnection, id: i64) -> Result<User, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => decode(&row),
        None => Err(StoreError::NotFound(format!("user {id}"))),
    }
}

/// Serialises user-role changes: on PostgreSQL the upsert holds a row lock until commit (and
/// later statements of a READ COMMITTED transaction see what the previous holder committed);
/// SQLite write transactions are serial already.
async fn lock_users(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ('users_lock', '') \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn ensure_other_admin(
    conn: &mut AnyConnection,
    user: &User,
    action: &str,
) -> Result<(), StoreError> {
    let (admins,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = $1")
        .bind(UserRole::Admin.as_str())
        .fetch_one(&mut *conn)
        .await?;
    if admins <= 1 {
        return Err(StoreError::Conflict {
            field: "role".to_owned(),
            message: format!(
                "cannot {action} user `{}`: it is the last admin; make another user admin first",
                user.username
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(validate_username("ana.b+ops@example-1_x").is_ok());
        assert!(validate_username(&"a".repeat(150)).is_ok());
        assert!(validate_username(&"a".repeat(151)).is_err());
        assert!(validate_username("").is_err());
        let e = validate_username("ana b").unwrap_err();
        assert!(e.contains("' '"), "{e}");
        assert!(validate_username("émile").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("1234567").is_err());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
