//! Two `ims-control serve` processes on one fresh PostgreSQL database, started at the same
//! time: both migrate, exactly one creates the first admin, writes through one are read
//! through the other, and tokens issued by one are accepted by the other (one signing key).

mod process;
mod support;

use std::path::Path;
use std::process::Command;

use process::{Server, curl, get, login, printed_admin_password, serve};
use serde_json::json;
use support::tempdir::TempDir;

fn replica(database: &str, dir: &Path) -> Command {
    let mut cmd = serve(dir);
    cmd.env("IMS_DATABASE_URL", database);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_postgres_database() {
    let (url, name) = support::fresh_pg_database().await;
    let dir_a = TempDir::new("ims-scale-a");
    let dir_b = TempDir::new("ims-scale-b");
    let mut a = Server::spawn(replica(&url, dir_a.path()));
    let mut b = Server::spawn(replica(&url, dir_b.path()));
    a.url = a.wait_listening();
    b.url = b.wait_listening();

    let mut printed = printed_admin_password(&a.stdout());
    printed.extend(printed_admin_password(&b.stdout()));
    assert_eq!(
        printed.len(),
        1,
        "exactly one replica creates admin; A: {:?} B: {:?}",
        a.stdout(),
        b.stdout()
    );
    let password = &printed[0];

    // Log in through A, write through A, read through B with A's token.
    let token = login(&a.url, "admin", password, &[]);
    let created = curl(
        "POST",
        &format!("{}/api/cluster", a.url),
        Some(&token),
        Some(&json!({"name": "edge-scale", "description": "made through A"})),
        &[],
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_i64().expect("id");
    let read = get(&b.url, &format!("/api/cluster/{id}"), &token);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["name"], "edge-scale");
    assert_eq!(read.json()["description"], "made through A");

    // Users: created through B, logging in through A.
    let created = curl(
        "POST",
        &format!("{}/api/users", b.url),
        Some(&token),
        Some(&json!({"username": "ops", "password": "ops-pass-1", "role": "viewer"})),
        &[],
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let ops = login(&a.url, "ops", "ops-pass-1", &[]);
    let me = get(&b.url, "/api/users/me", &ops);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["username"], "ops");
    let list = get(&a.url, "/api/users", &token);
    assert_eq!(list.json()["count"], 2);

    // Both stop cleanly; then the database goes.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    drop((a, b));
    support::drop_pg_database(&name).await;
}
