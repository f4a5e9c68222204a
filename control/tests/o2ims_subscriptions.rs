//! O2ims inventory subscriptions: CRUD and validation under every spelling, and notifications
//! of machines created, changed and deleted through the REST API delivered to a real local
//! HTTP callback server, with retries, and a queue dropped with its subscription.

mod support;

use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use ims_control::db::{Db, now_ms};
use ims_control::o2ims::{changes, delivery};
use serde_json::{Value, json};
use support::callback::Callback;
use support::inventory::{create_machine, seed};
use support::{TestApp, assert_problem};

const V1: &str = "/o2ims-infrastructureInventory/v1";
const PREFIXES: [&str; 4] = [
    "/o2ims-infrastructureInventory/v1",
    "/o2ims-infrastructureInventory/v2",
    "/O2ims_infrastructureInventory/v1",
    "/O2ims_infrastructureInventory/v2",
];

async fn queued(db: &Db) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM o2ims_notifications")
        .fetch_one(db.pool())
        .await
        .expect("count");
    n
}

async fn subscribe(app: &TestApp, callback: &str, filter: Option<&str>) -> String {
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"callback": callback, "filter": filter, "consumerSubscriptionId": "focom-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["subscriptionId"]
        .as_str()
        .expect("subscriptionId")
        .to_owned()
}

async fn crud(app: &TestApp) {
    let body = json!({"callback": "http://127.0.0.1:9/notify", "consumerSubscriptionId": "c-1",
                      "filter": "(eq,objectType,resource)", "subscriptionId": "ignored"});
    let r = app.post(&format!("{V1}/subscriptions"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["subscriptionId"].as_str().expect("id").to_owned();
    assert_ne!(id, "ignored");
    assert_eq!(r.body["callback"], "http://127.0.0.1:9/notify");
    assert_eq!(r.body["consumerSubscriptionId"], "c-1");
    assert_eq!(r.body["filter"], "(eq,objectType,resource)");
    let created = r.body.clone();
    for prefix in PREFIXES {
        let one = app.get(&format!("{prefix}/subscriptions/{id}")).await;
        assert_eq!(one.status, StatusCode::OK, "{prefix}: {}", one.body);
        assert_eq!(one.body, created);
        let list = app
            .viewer(Method::GET, &format!("{prefix}/subscriptions"), None)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body, json!([created]));
    }
    // A second one without the optional fields.
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"callback": "http://smo.example/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["filter"], Value::Null);
    let list = app.get(&format!("{V1}/subscriptions")).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));

    // Validation: every bad field at once.
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"filter": "(eq,name", "consumerSubscriptionId": 5}),
        )
        .await;
    let mut fields: Vec<_> = assert_problem(&r, StatusCode::BAD_REQUEST)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    fields.sort();
    assert_eq!(fields, ["callback", "consumerSubscriptionId", "filter"]);
    for bad in ["ftp://smo.example/", "/relative", "nonsense"] {
        let r = app
            .post(&format!("{V1}/subscriptions"), json!({"callback": bad}))
            .await;
        let errors = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].0, "callback", "{bad}");
        assert!(errors[0].1.contains("http://"), "{bad}: {}", errors[0].1);
    }
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"callback": "http://x/", "bogus": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // Authorization.
    let uri = format!("{V1}/subscriptions");
    let r = app
        .viewer(Method::POST, &uri, Some(json!({"callback": "http://x/"})))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app.anonymous(Method::GET, &uri, None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    let one = format!("{V1}/subscriptions/{id}");
    let r = app.viewer(Method::DELETE, &one, None).await;
    assert_problem(&r, StatusCode::FORBIDDEN);

    // Delete.
    let r = app
        .delete(&format!(
            "/O2ims_infrastructureInventory/v2/subscriptions/{id}"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_problem(&app.get(&one).await, StatusCode::NOT_FOUND);
    assert_problem(&app.delete(&one).await, StatusCode::NOT_FOUND);
    assert_problem(
        &app.get(&format!("{V1}/subscriptions/not-a-uuid")).await,
        StatusCode::NOT_FOUND,
    );
    let list = app.get(&format!("{V1}/subscriptions")).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
}
dual_test!(crud);

async fn create_modify_delete(app: &TestApp) {
    let db = &app.state.db;
    seed(app).await;
    // Baseline before anyone subscribes: nothing is queued.
    let first = changes::detect_changes(db, now_ms()).await.expect("detect");
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(queued(db).await, 0);
    assert!(
        changes::detect_changes(db, now_ms())
            .await
            .expect("detect")
            .is_empty()
    );

    let (cb, url, server) = Callback::start(0).await;
    let sub = subscribe(app, &url, Some("(eq,objectType,resource)")).await;
    let client = delivery::client();

    // Create.
    let machine = create_machine(app, "m-1", "02:00:00:00:00:01").await;
    let found = changes::detect_changes(db, now_ms()).await.expect("detect");
    // The machine and its cluster (capacity) changed; only the machine is wanted.
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(queued(db).await, 1);
    let round = delivery::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    assert_eq!(round.delivered, 1);
    assert_eq!(queued(db).await, 0);
    let got = cb.received();
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(n["notificationEventType"], 0);
    assert_eq!(n["subscriptionId"], sub.as_str());
    assert_eq!(n["consumerSubscriptionId"], "focom-1");
    assert_eq!(n["objectType"], "resource");
    assert_eq!(n["priorObjectState"], Value::Null);
    assert_eq!(n["postObjectState"]["description"], "m-1");
    assert_eq!(n["postObjectState"]["extensions"]["machineId"], machine);
    // objectRef is the object's URI: it answers the post state.
    let object_ref = n["objectRef"].as_str().expect("objectRef").to_owned();
    assert!(object_ref.starts_with(V1), "{object_ref}");
    let shown = app.get(&object_ref).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body, n["postObjectState"]);

    // Modify.
    let r = app
        .patch(
            &format!("/api/machines/{machine}"),
            json!({"hostname": "m-1b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    changes::detect_changes(db, now_ms()).await.expect("detect");
    let round = delivery::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    assert_eq!(round.delivered, 1);
    let got = cb.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["notificationEventType"], 1);
    assert_eq!(got[1]["priorObjectState"]["description"], "m-1");
    assert_eq!(got[1]["postObjectState"]["description"], "m-1b");
    assert_eq!(got[1]["objectRef"], object_ref.as_str());

    // Delete.
    let r = app.delete(&format!("/api/machines/{machine}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    changes::detect_changes(db, now_ms()).await.expect("detect");
    let round = delivery::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    assert_eq!(round.delivered, 1);
    let got = cb.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["notificationEventType"], 2);
    assert_eq!(got[2]["priorObjectState"]["description"], "m-1b");
    assert_eq!(got[2]["postObjectState"], Value::Null);
    assert_eq!(got[2]["objectRef"], object_ref.as_str());
    assert_eq!(cb.requests.load(Ordering::SeqCst), 3);
    server.abort();
}
dual_test!(create_modify_delete);

async fn retries(app: &TestApp) {
    let db = &app.state.db;
    changes::detect_changes(db, now_ms()).await.expect("detect");
    let (cb, url, server) = Callback::start(2).await;
    subscribe(app, &url, None).await;
    seed(app).await;
    let t0 = now_ms();
    let found = changes::detect_changes(db, t0).await.expect("detect");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(queued(db).await, 2);
    let client = delivery::client();
    // One subscription's queue is sent in order, one at a time: the pool first.
    let r = delivery::deliver_due(db, &client, t0).await.expect("round");
    assert_eq!((r.delivered, r.failed), (0, 1));
    let (attempts, error): (i64, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM o2ims_notifications ORDER BY id LIMIT 1")
            .fetch_one(db.pool())
            .await
            .expect("row");
    assert_eq!(attempts, 1);
    assert!(error.is_some_and(|e| e.contains("500")));
    // Not due before its 1 s backoff.
    let r = delivery::deliver_due(db, &client, t0 + 999)
        .await
        .expect("round");
    assert_eq!((r.delivered, r.failed), (0, 0));
    let r = delivery::deliver_due(db, &client, t0 + 1000)
        .await
        .expect("round");
    assert_eq!((r.delivered, r.failed), (0, 1));
    // Then 2 s.
    let r = delivery::deliver_due(db, &client, t0 + 2999)
        .await
        .expect("round");
    assert_eq!((r.delivered, r.failed), (0, 0));
    let r = delivery::deliver_due(db, &client, t0 + 3000)
        .await
        .expect("round");
    assert_eq!((r.delivered, r.failed), (1, 0));
    let r = delivery::deliver_due(db, &client, t0 + 3000)
        .await
        .expect("round");
    assert_eq!((r.delivered, r.failed), (1, 0));
    assert_eq!(queued(db).await, 0);
    let got = cb.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["objectType"], "resourcePool");
    assert_eq!(got[0]["postObjectState"]["name"], "edge-a");
    assert_eq!(got[1]["objectType"], "deploymentManager");
    assert_eq!(got[1]["postObjectState"]["name"], "alpha");
    assert_eq!(cb.requests.load(Ordering::SeqCst), 4);
    server.abort();
}
dual_test!(retries);

async fn deleting_drops_queue(app: &TestApp) {
    let db = &app.state.db;
    changes::detect_changes(db, now_ms()).await.expect("detect");
    // A dead callback: a port nobody listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/notify", listener.local_addr().expect("addr"));
    drop(listener);
    let dead_sub = subscribe(app, &dead, None).await;
    let (cb, url, server) = Callback::start(0).await;
    subscribe(app, &url, Some("(eq,objectType,resourcePool)")).await;
    seed(app).await;
    let t0 = now_ms();
    changes::detect_changes(db, t0).await.expect("detect");
    assert_eq!(queued(db).await, 3);
    let client = delivery::client();
    // The dead callback does not hold up the live one.
    let r = delivery::deliver_due(db, &client, t0).await.expect("round");
    assert_eq!((r.delivered, r.failed), (1, 1));
    assert_eq!(cb.received().len(), 1);
    assert_eq!(queued(db).await, 2);
    // Never dropped while the subscription exists, however often it fails.
    for i in 1..6 {
        delivery::deliver_due(db, &client, t0 + i * 600_000)
            .await
            .expect("round");
    }
    assert_eq!(queued(db).await, 2);
    let r = app.delete(&format!("{V1}/subscriptions/{dead_sub}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(queued(db).await, 0);
    server.abort();
}
dual_test!(deleting_drops_queue);

/// The background tasks (as `serve` starts them) deliver a machine created through the API.
async fn background_delivery(app: &TestApp) {
    let db = &app.state.db;
    seed(app).await;
    changes::detect_changes(db, now_ms()).await.expect("detect");
    let (cb, url, server) = Callback::start(1).await;
    subscribe(app, &url, Some("(eq,objectType,resource)")).await;
    let tasks = delivery::spawn(db);
    create_machine(app, "bg-1", "02:00:00:00:00:09").await;
    let got = cb.wait_received().await;
    drop(tasks);
    assert_eq!(got.len(), 1, "not delivered within 10 s");
    assert_eq!(got[0]["notificationEventType"], 0);
    assert_eq!(got[0]["postObjectState"]["description"], "bg-1");
    assert_eq!(cb.requests.load(Ordering::SeqCst), 2);
    server.abort();
}
dual_test!(background_delivery);
