//! The uplink through the real `ims-control` binary on a temporary SQLite data directory:
//! `join-token` (missing site, bad TTL, the token as the last line with the CA's fingerprint),
//! `serve --quic-listen 127.0.0.1:0` logging where it listens, enrolment and a session with the
//! test edge, `worker list`, and `worker revoke` dropping the live session of the serving
//! process; `join-token --count N` making N distinct one-time tokens in the store.

mod process;
mod support;
mod uplink_client;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use ims_control::db::{Db, now_ms};
use ims_control::store::sites::{self, SiteValues};
use ims_control::uplink::Ca;
use ims_control::uplink::tokens::{self, JoinToken, Refusal};
use ims_proto::{ControlMessage, ErrorCode};
use process::{Server, ims_control, quic_addr, run, text};
use support::tempdir::TempDir;
use uplink_client::Edge;

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = ims_control();
    c.args(args).arg("--data-dir").arg(dir);
    c
}

async fn blocking(c: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || run(c, None))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_token_serve_enrol_list_and_revoke() {
    let dir = TempDir::new("ims-uplink-cli");

    let out = blocking(cmd(dir.path(), &["join-token", "--site", "lab"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no site has the name or id `lab`"), "{err}");

    // The site (made through the store, as the API would).
    let db = Db::open_data_dir(dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    let mut tx = db.begin_write().await.expect("tx");
    let values = SiteValues {
        name: "lab".into(),
        description: String::new(),
    };
    sites::create(&mut tx, &values, now_ms())
        .await
        .expect("site");
    tx.commit().await.expect("commit");

    let out = blocking(cmd(
        dir.path(),
        &["join-token", "--site", "lab", "--ttl", "5s"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--ttl"), "{}", text(&out.stderr));

    let out = blocking(cmd(
        dir.path(),
        &["join-token", "--site", "LAB", "--ttl", "2h"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.lines().last().expect("a last line").to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{stdout}");
    assert_eq!(parts[0], "IMS1");
    assert!(parts[1].len() == 64 && parts[2].len() == 64, "{token}");
    let ca = Ca::load_or_create(&db).await.expect("ca");
    assert_eq!(
        parts[2],
        ca.fingerprint(),
        "join-token created the CA serve uses"
    );
    assert!(stdout.contains("site lab"), "{stdout}");

    let mut serve = cmd(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    serve.args(["--quic-listen", "127.0.0.1:0", "--heartbeat-interval", "3s"]);
    let server = tokio::task::spawn_blocking(move || Server::start(serve))
        .await
        .expect("join");
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = quic_addr(&server.stderr()) {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no quic line: {:?}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    assert_ne!(addr.port(), 0);
    let line = server
        .stderr()
        .into_iter()
        .find(|l| l.contains("quic listening on"))
        .expect("line");
    assert!(line.contains(ca.fingerprint()), "{line}");

    let edge = Edge::enroll(addr, &token, "rack-7").await;
    assert_eq!(edge.response.worker_id, "lab-rack-7");
    let mut live = edge.connect(addr, true).await.expect("connect");
    let ControlMessage::Welcome(w) = live.recv().await else {
        panic!("Welcome")
    };
    assert_eq!(w.heartbeat_interval_ms, 3000);
    assert!(matches!(live.recv().await, ControlMessage::Snapshot(_)));

    let out = blocking(cmd(dir.path(), &["worker", "list"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let row = list
        .lines()
        .find(|l| l.contains("lab-rack-7"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("active") && row.contains("lab") && row.ends_with("no"),
        "{row}"
    );

    let out = blocking(cmd(dir.path(), &["worker", "revoke", "nobody"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no worker `nobody`"),
        "{}",
        text(&out.stderr)
    );

    let started = Instant::now();
    let out = blocking(cmd(dir.path(), &["worker", "revoke", "lab-rack-7"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("revoked worker lab-rack-7"));
    match live.recv_within(Duration::from_secs(5)).await {
        Ok(ControlMessage::Error(e)) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("the serving process drops the revoked worker: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let out = blocking(cmd(dir.path(), &["worker", "list"])).await;
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.contains("lab-rack-7") && l.ends_with("yes"))
    );

    db.close().await;
    let mut server = server;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("join");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_token_count_prints_that_many_one_time_tokens() {
    let dir = TempDir::new("ims-uplink-cli-count");
    let db = Db::open_data_dir(dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    let mut tx = db.begin_write().await.expect("tx");
    let values = SiteValues {
        name: "bench".into(),
        description: String::new(),
    };
    sites::create(&mut tx, &values, now_ms())
        .await
        .expect("site");
    tx.commit().await.expect("commit");

    for bad in ["0", "10001", "-1", "many"] {
        let count = format!("--count={bad}");
        let out = blocking(cmd(dir.path(), &["join-token", "--site", "bench", &count])).await;
        assert_eq!(out.status.code(), Some(2), "--count {bad}");
        assert!(
            text(&out.stderr).contains("--count"),
            "{}",
            text(&out.stderr)
        );
    }

    let out = blocking(cmd(
        dir.path(),
        &["join-token", "--site", "bench", "--count", "5"],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() > 5, "{stdout}");
    assert!(
        lines[0].contains("5 join tokens for site bench"),
        "{stdout}"
    );
    let (head, last) = lines.split_at(lines.len() - 5);
    assert!(
        head.iter().all(|l| !l.starts_with("IMS1.")),
        "only the last 5 lines are tokens: {stdout}"
    );
    let ca = Ca::load_or_create(&db).await.expect("ca");
    let parsed: Vec<JoinToken> = last
        .iter()
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        parsed
            .iter()
            .all(|t| t.ca_fingerprint() == ca.fingerprint())
    );
    let distinct: std::collections::BTreeSet<&str> = last.iter().copied().collect();
    assert_eq!(distinct.len(), 5, "{stdout}");

    // Each is stored and works once.
    let mut tx = db.begin_write().await.expect("tx");
    for t in &parsed {
        let first = tokens::consume(&mut tx, t, now_ms()).await.expect("store");
        assert!(first.is_ok(), "{first:?}");
        let again = tokens::consume(&mut tx, t, now_ms()).await.expect("store");
        assert!(matches!(again, Err(Refusal::Used(_))), "{again:?}");
    }
    tx.rollback().await.expect("rollback");

    let out = blocking(cmd(dir.path(), &["join-token", "--site", "bench"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("IMS1.")).count(),
        1,
        "the default is one token: {stdout}"
    );
    db.close().await;
}
