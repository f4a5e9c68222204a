//! Test harness: the whole API in-process on a fresh SQLite file or a fresh PostgreSQL
//! database, with an admin and a viewer and their access tokens.
//!
//! PostgreSQL comes from `IMS_TEST_PG_URL` (default
//! `postgres://ims_test:ims_test@127.0.0.1:5432/postgres`, the role `scripts/test.sh` creates).
//! Each test gets its own database `ims_t_<pid>_<n>`, dropped by [`TestApp::finish`]; databases
//! left by earlier crashed runs are dropped on first use. A test that cannot reach PostgreSQL
//! fails and says how to start it.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use ims_control::api;
use ims_control::auth::{AuthSettings, AuthUser, Claims, TokenKind, password};
use ims_control::db::{Db, now_ms};
use ims_control::model::UserRole;
use ims_control::state::AppState;
use serde_json::Value;
use tokio::sync::OnceCell;
use tower::ServiceExt;

pub mod callback;
pub mod inventory;

/// Runs an `async fn name(app: TestApp)` on SQLite and on PostgreSQL, as `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! dual_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::support::TestApp::sqlite().await;
                super::$name(&app).await;
                app.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app = $crate::support::TestApp::postgres().await;
                super::$name(&app).await;
                app.finish().await;
            }
        }
    };
}

pub const DEFAULT_PG_URL: &str = "postgres://ims_test:ims_test@127.0.0.1:5432/postgres";

pub fn pg_admin_url() -> String {
    std::env::var("IMS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `base` with its database name replaced by `db`.
pub fn pg_url_for(base: &str, db: &str) -> String {
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
    let head = head.rsplit_once('/').map_or(head, |(h, _)| h);
    match query {
        Some(q) => format!("{head}/{db}?{q}"),
        None => format!("{head}/{db}"),
    }
}

static STALE_DROPPED: OnceCell<()> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new admin connection for each use: a pool's sockets belong to the Tokio runtime that
/// opened them, and every test has its own runtime, so a shared pool fails ("Tokio context
/// is being shut down") once the test that opened it ends.
async fn pg_admin() -> Db {
    let url = pg_admin_url();
    let db = Db::connect(&url, 1).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed for the `postgres` tests and is not reachable ({e}). \
             Run `sudo bash scripts/test.sh` (it starts the Debian cluster and creates the \
             ims_test role) or set IMS_TEST_PG_URL to a role that may CREATE DATABASE."
        )
    });
    STALE_DROPPED
        .get_or_init(|| drop_stale_databases(&db))
        .await;
    db
}

/// Drops `ims_t_<pid>_*` databases whose process is gone.
async fn drop_stale_databases(admin: &Db) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'ims_t_%'")
            .fetch_all(admin.pool())
            .await
            .unwrap_or_default();
    for (name,) in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(admin.pool())
                .await;
        }
    }
}

/// A fresh PostgreSQL database; returns its URL and name.
pub async fn fresh_pg_database() -> (String, String) {
    let admin = pg_admin().await;
    let name = format!(
        "ims_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(admin.pool())
        .await
        .expect("CREATE DATABASE");
    admin.close().await;
    (pg_url_for(&pg_admin_url(), &name), name)
}

/// Drops a test database. `WITH (FORCE)` may be refused for a moment (an autovacuum worker
/// the test role may not signal); retry, and leave it to the stale-database sweep of a later
/// run rather than fail a test that passed.
pub async fn drop_pg_database(name: &str) {
    let admin = pg_admin().await;
    let mut last = None;
    for _ in 0..10 {
        match sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(admin.pool())
            .await
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if let Some(e) = last {
        eprintln!("warning: test database {name} not dropped ({e}); a later run drops it");
    }
    admin.close().await;
}

pub enum Backing {
    Sqlite(tempdir::TempDir),
    Postgres(String),
}

/// A minimal temporary directory (removed on drop).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            Self(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A response: status, headers and the body parsed as JSON (`Value::Null` when empty,
/// `Value::String` when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub struct TestApp {
    pub state: AppState,
    pub admin_token: String,
    pub viewer_token: String,
    pub backing: Backing,
}

impl TestApp {
    pub async fn sqlite() -> Self {
        let dir = tempdir::TempDir::new("ims-control-test");
        let db = Db::open_data_dir(dir.path()).await.expect("open sqlite");
        Self::with_db(db, Backing::Sqlite(dir)).await
    }

    pub async fn postgres() -> Self {
        let (url, name) = fresh_pg_database().await;
        let db = Db::connect(&url, 8)
            .await
            .expect("connect to test database");
        Self::with_db(db, Backing::Postgres(name)).await
    }

    async fn with_db(db: Db, backing: Backing) -> Self {
        db.migrate().await.expect("migrate");
        let state = AppState::new(db, AuthSettings::default())
            .await
            .expect("state");
        let admin = insert_user(&state.db, "admin", "admin-pass", UserRole::Admin).await;
        let viewer = insert_user(&state.db, "viewer", "viewer-pass", UserRole::Viewer).await;
        let admin_token = token_for(&state, &admin);
        let viewer_token = token_for(&state, &viewer);
        Self {
            state,
            admin_token,
            viewer_token,
            backing,
        }
    }

    /// Drops the PostgreSQL database (SQLite's directory goes with the value).
    pub async fn finish(self) {
        self.state.db.close().await;
        if let Backing::Postgres(name) = &self.backing {
            drop_pg_database(name).await;
        }
    }

    /// Any request. `token` is sent as a bearer token; `body` as JSON.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = match body {
            Some(v) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&v).expect("json"))),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    /// Sends a prepared request through the full service (trailing-slash normalisation included).
    pub async fn send(&self, request: Request<Body>) -> Resp {
        let response = api::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Some(&self.admin_token), None)
            .await
    }
    pub async fn post(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::POST, uri, Some(&self.admin_token), Some(body))
            .await
    }
    pub async fn put(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::PUT, uri, Some(&self.admin_token), Some(body))
            .await
    }
    pub async fn patch(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::PATCH, uri, Some(&self.admin_token), Some(body))
            .await
    }
    pub async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, Some(&self.admin_token), None)
            .await
    }
    pub async fn viewer(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        self.call(method, uri, Some(&self.viewer_token), body).await
    }
    pub async fn anonymous(&self, method: Method, uri: &str, body: Option<Value>) -> Resp {
        self.call(method, uri, None, body).await
    }
}

/// Inserts a user directly (the harness must not depend on the user API under test).
pub async fn insert_user(db: &Db, username: &str, pass: &str, role: UserRole) -> AuthUser {
    let hash = password::hash_password(pass).expect("hash");
    let now = now_ms();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (username, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(db.pool())
    .await
    .expect("insert user");
    AuthUser {
        user_id: id,
        username: username.to_owned(),
        role,
    }
}

/// A valid access token for `user`, minted with the app's keys.
pub fn token_for(state: &AppState, user: &AuthUser) -> String {
    let ttl = i64::try_from(state.auth.settings.access_ttl.as_secs()).unwrap_or(900);
    state
        .auth
        .keys
        .issue(&Claims::new(user, TokenKind::Access, now_ms(), ttl))
}

/// Asserts a problem document with `status`, returning its field errors as `(field, message)`.
pub fn assert_problem(resp: &Resp, status: StatusCode) -> Vec<(String, String)> {
    assert_eq!(resp.status, status, "body: {}", resp.body);
    assert_eq!(
        resp.content_type(),
        "application/problem+json",
        "body: {}",
        resp.body
    );
    assert_eq!(resp.body["status"], status.as_u16(), "body: {}", resp.body);
    resp.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
