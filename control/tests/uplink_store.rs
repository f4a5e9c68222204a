//! The uplink's store on both backends: the `config_rev` triggers fire for every write to
//! machines, clusters, boot profiles, IP pools and sites (and for nothing else), snapshots
//! carry the counter as their generation, the CA is created once however many replicas start
//! at the same moment, and a join token is consumed by exactly one of two racing enrolments.

mod support;

use std::time::Duration;

use ims_control::db::now_ms;
use ims_control::uplink::tokens::{self, JoinToken};
use ims_control::uplink::{Ca, revs, snapshot};
use serde_json::json;
use support::TestApp;

async fn config_rev(app: &TestApp) -> u64 {
    revs::read(&app.state.db).await.expect("revs").config
}

/// Runs `sql` and checks that it moved `config_rev` (or not).
async fn bumps(app: &TestApp, sql: &str, expected: bool) {
    let before = config_rev(app).await;
    let done = sqlx::query(sql)
        .execute(app.state.db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(done.rows_affected(), 1, "{sql}");
    let after = config_rev(app).await;
    assert_eq!(after > before, expected, "{sql}: {before} -> {after}");
}

async fn every_write_to_the_synced_tables_moves_config_rev(app: &TestApp) {
    let t = now_ms();
    let ins = |table: &str, cols: &str, vals: &str| {
        format!("INSERT INTO {table} ({cols}, created_at, updated_at) VALUES ({vals}, {t}, {t})")
    };
    bumps(app, &ins("sites", "name", "'s1'"), true).await;
    bumps(
        app,
        "UPDATE sites SET description = 'x' WHERE name = 's1'",
        true,
    )
    .await;
    bumps(
        app,
        &ins(
            "clusters",
            "name, status, health, site_id",
            "'c1', 'UNKNOWN', 'UNKNOWN', NULL",
        ),
        true,
    )
    .await;
    bumps(
        app,
        "UPDATE clusters SET description = 'x' WHERE name = 'c1'",
        true,
    )
    .await;
    bumps(app, &ins("boot_profiles", "name", "'p1'"), true).await;
    bumps(
        app,
        "UPDATE boot_profiles SET bios = 'a' WHERE name = 'p1'",
        true,
    )
    .await;
    bumps(app, &ins("ip_pools", "cidr", "'10.0.0.0/24'"), true).await;
    bumps(
        app,
        "UPDATE ip_pools SET gateway = '10.0.0.1' WHERE cidr = '10.0.0.0/24'",
        true,
    )
    .await;
    let (cid,): (i64,) = sqlx::query_as("SELECT id FROM clusters WHERE name = 'c1'")
        .fetch_one(app.state.db.pool())
        .await
        .expect("cluster");
    bumps(
        app,
        &ins(
            "machines",
            "cluster_id, hostname, mac, role, os_type, status, health",
            &format!("{cid}, 'n1', '52:54:00:00:00:01', 'WORKER', 'LINUX', 'INACTIVE', 'UNKNOWN'"),
        ),
        true,
    )
    .await;
    bumps(
        app,
        "UPDATE machines SET netboot = 0 WHERE hostname = 'n1'",
        true,
    )
    .await;
    bumps(app, "DELETE FROM machines WHERE hostname = 'n1'", true).await;
    bumps(app, "DELETE FROM ip_pools WHERE cidr = '10.0.0.0/24'", true).await;
    bumps(app, "DELETE FROM boot_profiles WHERE name = 'p1'", true).await;
    bumps(app, "DELETE FROM clusters WHERE name = 'c1'", true).await;
    bumps(app, "DELETE FROM sites WHERE name = 's1'", true).await;
    // Other tables do not.
    bumps(
        app,
        &format!(
            "INSERT INTO workers (worker_id, status, registered_at) VALUES ('w1', 'inactive', {t})"
        ),
        false,
    )
    .await;
    bumps(
        app,
        "UPDATE workers SET last_heartbeat = 5 WHERE worker_id = 'w1'",
        false,
    )
    .await;

    // A failed write leaves it alone: the bump rolls back with the change.
    let before = config_rev(app).await;
    let mut tx = app.state.db.begin_write().await.expect("tx");
    sqlx::query(&ins("sites", "name", "'s2'"))
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(config_rev(app).await, before);
}

dual_test!(every_write_to_the_synced_tables_moves_config_rev);

async fn snapshots_carry_the_counter_as_generation(app: &TestApp) {
    let r = app.post("/api/sites", json!({"name": "lab"})).await;
    let site = r.body["id"].as_i64().expect("id");
    app.post("/api/cluster", json!({"name": "c", "site": "lab"}))
        .await;
    app.post(
        "/api/machines",
        json!({"cluster": "c", "hostname": "n1", "mac": "52:54:00:00:00:01"}),
    )
    .await;
    let built = snapshot::load(&app.state.db, site).await.expect("load");
    assert!(built.skipped.is_empty());
    assert_eq!(built.snapshot.generation, config_rev(app).await);
    assert_eq!(built.snapshot.machines.len(), 1);

    let cache = snapshot::SnapshotCache::new();
    let a = cache.get(&app.state.db, site, 0).await.expect("get");
    let b = cache
        .get(&app.state.db, site, a.generation)
        .await
        .expect("get");
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "cached while the counter stands"
    );
    app.post(
        "/api/machines",
        json!({"cluster": "c", "hostname": "n2", "mac": "52:54:00:00:00:02"}),
    )
    .await;
    let rev = config_rev(app).await;
    let c = cache.get(&app.state.db, site, rev).await.expect("get");
    assert_eq!(c.generation, rev);
    assert_eq!(c.machines.len(), 2);
}

dual_test!(snapshots_carry_the_counter_as_generation);

async fn the_ca_is_created_once(app: &TestApp) {
    let db = &app.state.db;
    let (a, b, c) = tokio::join!(
        Ca::load_or_create(db),
        Ca::load_or_create(db),
        Ca::load_or_create(db)
    );
    let fp = a.expect("a").fingerprint().to_owned();
    assert_eq!(b.expect("b").fingerprint(), fp);
    assert_eq!(c.expect("c").fingerprint(), fp);
    assert_eq!(
        Ca::load_or_create(db).await.expect("again").fingerprint(),
        fp
    );
    let (stored,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE key = 'uplink_ca'")
        .fetch_one(db.pool())
        .await
        .expect("stored");
    assert!(
        stored.contains("BEGIN PRIVATE KEY"),
        "the key is kept in the store"
    );
}

dual_test!(the_ca_is_created_once);

async fn a_token_is_consumed_by_one_of_two_racers(app: &TestApp) {
    let r = app.post("/api/sites", json!({"name": "lab"})).await;
    assert_eq!(r.status.as_u16(), 201);
    let fp = "ab".repeat(32);
    let issued = tokens::issue(&app.state.db, &fp, "lab", Duration::from_secs(60), now_ms())
        .await
        .expect("issue");
    let token: JoinToken = issued.token.to_string().parse().expect("parse");
    let attempt = || async {
        let mut tx = app.state.db.begin_write().await.expect("tx");
        let got = tokens::consume(&mut tx, &token, now_ms())
            .await
            .expect("consume");
        tx.commit().await.expect("commit");
        got
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(tokens::Refusal::Used(_))), "{loser:?}");
    // The hash, not the secret, is stored.
    let (hash,): (String,) = sqlx::query_as("SELECT secret_sha256 FROM join_tokens")
        .fetch_one(app.state.db.pool())
        .await
        .expect("row");
    assert_eq!(hash, token.secret_sha256());
    assert!(!issued.token.to_string().contains(&hash));
}

dual_test!(a_token_is_consumed_by_one_of_two_racers);
