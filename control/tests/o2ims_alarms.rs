//! O2ims monitoring: every endpoint under both spellings, alarm filters and selectors,
//! acknowledging and clearing (and their errors), the service configuration and retention, the
//! alarm dictionaries, each alarm condition raised and cleared by changing the data through the
//! REST API (and a heartbeat's age in the store), and alarm subscriptions delivering NEW,
//! ACKNOWLEDGE and CLEAR notifications to a real local HTTP callback server.

mod alarms_support;
mod support;

use alarms_support::{
    Callback, INV_PREFIXES, MON, MON_PREFIXES, age_heartbeat, alarms, assert_aliases,
    assert_cleared, assert_open, cloud, create_machine, evaluate, heartbeat, lease, named, ok,
    queued, register_worker, seed, send_patch, set_machine_status, subscribe,
};
use axum::http::{Method, StatusCode};
use ims_control::db::now_ms;
use ims_control::o2ims::delivery;
use ims_control::o2ims::monitoring::{self, evaluator, notify};
use serde_json::{Value, json};
use support::{TestApp, assert_problem};

async fn endpoints_and_dictionaries(app: &TestApp) {
    for name in [
        "/o2ims-infrastructureMonitoring",
        "/O2ims_infrastructureMonitoring",
    ] {
        let r = app.get(&format!("{name}/api_versions")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["uriPrefix"], name);
        assert_eq!(r.body["apiVersions"][0]["version"], "1.1.0");
        let r = app.get(&format!("{name}/v1/api_versions")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["uriPrefix"], format!("{name}/v1"));
    }
    let cloud = cloud(app).await;
    let server_type = cloud.named_id("resourceType", "bare-metal-server");
    let edge_type = cloud.named_id("resourceType", "edge-worker");
    let pool_type = cloud.named_id("resourceType", "ip-pool");
    // The inventory lists the server type; its id is the machines' objectTypeId.
    let types = app
        .get("/o2ims-infrastructureInventory/v1/resourceTypes")
        .await;
    assert_eq!(types.body[0]["resourceTypeId"], server_type.to_string());
    for prefix in MON_PREFIXES {
        let r = app.get(&format!("{prefix}/alarmDictionaries")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let list = r.body.as_array().cloned().expect("array");
        assert_eq!(list.len(), 3);
        for d in &list {
            let id = d["alarmDictionaryId"].as_str().expect("id");
            let one = app.get(&format!("{prefix}/alarmDictionaries/{id}")).await;
            assert_eq!(one.status, StatusCode::OK);
            assert_eq!(&one.body, d);
            assert_eq!(d["managementInterfaceId"], json!(["O2IMS"]));
            assert_eq!(d["pkNotificationField"], json!(["alarmDefinitionId"]));
        }
        let r = app
            .get(&format!("{prefix}/alarmDictionaries/{}", uuid::Uuid::nil()))
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
        let r = app
            .anonymous(Method::GET, &format!("{prefix}/alarmDictionaries"), None)
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
    }
    let expect = [
        (server_type, vec!["machine-provisioning-failed"]),
        (edge_type, vec!["edge-down", "edge-service-error"]),
        (pool_type, vec!["ip-pool-usage-high"]),
    ];
    for prefix in INV_PREFIXES {
        for (type_id, names) in &expect {
            let r = app
                .viewer(
                    Method::GET,
                    &format!("{prefix}/resourceTypes/{type_id}/alarmDictionary"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{prefix}: {}", r.body);
            assert_eq!(r.body["resourceTypeId"], type_id.to_string());
            let got: Vec<&str> = r.body["alarmDefinition"]
                .as_array()
                .expect("definitions")
                .iter()
                .filter_map(|d| d["alarmName"].as_str())
                .collect();
            assert_eq!(&got, names);
            for d in r.body["alarmDefinition"].as_array().expect("defs") {
                assert!(d["alarmDefinitionId"].is_string());
                assert_eq!(d["clearingType"], "AUTOMATIC");
                assert!(d["extensions"]["raiseCondition"].is_string());
            }
        }
        let r = app
            .get(&format!(
                "{prefix}/resourceTypes/{}/alarmDictionary",
                uuid::Uuid::nil()
            ))
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    // Every monitoring endpoint answers under both spellings (empty store).
    for prefix in MON_PREFIXES {
        for path in ["alarms", "alarmSubscriptions", "alarmServiceConfiguration"] {
            let r = app
                .viewer(Method::GET, &format!("{prefix}/{path}"), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{prefix}/{path}: {}", r.body);
        }
        let r = app
            .get(&format!("{prefix}/alarms/{}", uuid::Uuid::nil()))
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);
        let r = app.get(&format!("{prefix}/alarms/not-a-uuid")).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
}
dual_test!(endpoints_and_dictionaries);

async fn service_configuration(app: &TestApp) {
    let uri = format!("{MON}/alarmServiceConfiguration");
    let r = app.get(&uri).await;
    assert_eq!(r.body, json!({"retentionPeriod": 14, "extensions": {}}));
    let r = app
        .put(&uri, json!({"retentionPeriod": 3, "extensions": {"a": 1}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"retentionPeriod": 3, "extensions": {"a": 1}})
    );
    let r = app.patch(&uri, json!({"retentionPeriod": 2})).await;
    assert_eq!(
        r.body,
        json!({"retentionPeriod": 2, "extensions": {"a": 1}})
    );
    let r = app
        .get("/O2ims_infrastructureMonitoring/v1/alarmServiceConfiguration")
        .await;
    assert_eq!(
        r.body,
        json!({"retentionPeriod": 2, "extensions": {"a": 1}})
    );
    // PUT resets what it does not give.
    let r = app.put(&uri, json!({"retentionPeriod": 1})).await;
    assert_eq!(r.body, json!({"retentionPeriod": 1, "extensions": {}}));
    // Errors, all at once.
    let r = app
        .put(&uri, json!({"retentionPeriod": 0, "extensions": 5, "x": 1}))
        .await;
    let mut fields: Vec<_> = assert_problem(&r, StatusCode::BAD_REQUEST)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    fields.sort();
    assert_eq!(fields, ["extensions", "retentionPeriod", "x"]);
    let r = app.put(&uri, json!({})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app.patch(&uri, json!({"retentionPeriod": "7"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .viewer(Method::PATCH, &uri, Some(json!({"retentionPeriod": 5})))
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    assert_eq!(app.get(&uri).await.body["retentionPeriod"], 1);

    // Retention: a cleared alarm older than a day is purged by the evaluator; open ones stay.
    seed(app).await;
    let m1 = create_machine(app, "r-1", "02:00:00:00:01:01").await;
    let m2 = create_machine(app, "r-2", "02:00:00:00:01:02").await;
    set_machine_status(app, m1, "ERROR").await;
    set_machine_status(app, m2, "ERROR").await;
    assert_eq!(evaluate(app).await.raised, 2);
    set_machine_status(app, m1, "DEPLOYING").await;
    assert_eq!(evaluate(app).await.cleared, 1);
    assert_eq!(alarms(app, "").await.len(), 2);
    sqlx::query("UPDATE o2ims_alarms SET cleared_at = $1 WHERE cleared_at IS NOT NULL")
        .bind(now_ms() - 86_400_000 - 1000)
        .execute(app.state.db.pool())
        .await
        .expect("age");
    assert_eq!(evaluate(app).await.purged, 1);
    let left = alarms(app, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["extensions"]["objectName"], "r-2");
}
dual_test!(service_configuration);

async fn edge_alarms(app: &TestApp) {
    let db = &app.state.db;
    register_worker(app, "edge-1").await;
    // A worker that never sent a heartbeat raises nothing.
    ok(
        app,
        "/api/ims-worker/register",
        json!({"worker_id": "edge-new", "ip_address": "10.77.0.3"}),
    )
    .await;
    assert_eq!(evaluate(app).await, evaluator::Pass::default());
    assert!(alarms(app, "").await.is_empty());

    // Missed heartbeats: three 10 s intervals.
    age_heartbeat(db, "edge-1", 29_000).await;
    assert_eq!(evaluate(app).await.raised, 0);
    age_heartbeat(db, "edge-1", 31_000).await;
    assert_eq!(evaluate(app).await.raised, 1);
    let down = named(app, "edge-down").await;
    assert_eq!(down.len(), 1);
    assert_open(&down[0], 1);
    assert_aliases(&down[0]);
    let cloud = cloud(app).await;
    assert_eq!(
        down[0]["objectTypeId"],
        cloud.named_id("resourceType", "edge-worker").to_string()
    );
    assert_eq!(down[0]["objectClass"], "ims.control.EdgeWorker");
    assert_eq!(down[0]["extensions"]["objectName"], "edge-1");
    let w = app.get("/api/workers/edge-1").await.body;
    assert_eq!(
        down[0]["objectId"],
        cloud
            .id("worker", w["id"].as_i64().expect("id"))
            .to_string()
    );
    // Still down: no second alarm.
    assert_eq!(evaluate(app).await.raised, 0);
    // It comes back.
    heartbeat(app, "edge-1", "running").await;
    assert_eq!(evaluate(app).await.cleared, 1);
    let down = named(app, "edge-down").await;
    assert_eq!(down.len(), 1);
    assert_cleared(&down[0]);

    // A service error (legacy report_error), cleared by a clean heartbeat.
    ok(
        app,
        "/api/ims-worker/report_error",
        json!({"worker_id": "edge-1", "error": {"message": "TFTP bind failed"}}),
    )
    .await;
    assert_eq!(evaluate(app).await.raised, 1);
    let err = named(app, "edge-service-error").await;
    assert_open(&err[0], 2);
    assert_eq!(
        err[0]["extensions"]["details"]["lastError"],
        "TFTP bind failed"
    );
    // A failing service in a heartbeat keeps it open and changes its details.
    heartbeat(app, "edge-1", "failed").await;
    let pass = evaluate(app).await;
    assert_eq!((pass.raised, pass.changed, pass.cleared), (0, 1, 0));
    heartbeat(app, "edge-1", "running").await;
    assert_eq!(evaluate(app).await.cleared, 1);
    assert_cleared(&named(app, "edge-service-error").await[0]);
    // Down again: a new alarm (the cleared one stays in the history).
    age_heartbeat(db, "edge-1", 60_000).await;
    assert_eq!(evaluate(app).await.raised, 1);
    let down = named(app, "edge-down").await;
    assert_eq!(down.len(), 2);
    // Revoked workers are not alarmed: the open alarm clears.
    sqlx::query("UPDATE workers SET revoked = 1 WHERE worker_id = 'edge-1'")
        .execute(db.pool())
        .await
        .expect("revoke");
    assert_eq!(evaluate(app).await.cleared, 1);
}
dual_test!(edge_alarms);

/// A `ServiceError` event over the uplink raises edge-service-error as well.
async fn uplink_service_error(app: &TestApp) {
    use ims_proto::{EdgeEvent, EdgeEventKind, ServiceError};
    register_worker(app, "edge-u").await;
    let event = EdgeEvent {
        id: 1,
        at_ms: now_ms(),
        kind: EdgeEventKind::ServiceError(ServiceError {
            service: "tftp".into(),
            message: "disk full".into(),
        }),
    };
    ims_control::uplink::events::record_batch(&app.state.db, "edge-u", None, &[event], now_ms())
        .await
        .expect("record");
    assert_eq!(evaluate(app).await.raised, 1);
    let a = named(app, "edge-service-error").await;
    assert_open(&a[0], 2);
    assert_eq!(
        a[0]["extensions"]["details"]["lastError"],
        "tftp: disk full"
    );
    heartbeat(app, "edge-u", "running").await;
    assert_eq!(evaluate(app).await.cleared, 1);
}
dual_test!(uplink_service_error);

async fn machine_alarms(app: &TestApp) {
    seed(app).await;
    let m = create_machine(app, "node-1", "02:00:00:00:00:01").await;
    assert_eq!(evaluate(app).await.raised, 0);
    set_machine_status(app, m, "ERROR").await;
    assert_eq!(evaluate(app).await.raised, 1);
    let a = named(app, "machine-provisioning-failed").await;
    assert_open(&a[0], 1);
    assert_aliases(&a[0]);
    // The store refuses a second open alarm for the same definition and object.
    let dup = sqlx::query(
        "INSERT INTO o2ims_alarms (id, definition, object_kind, object_row, object_id, \
         severity, raised_at, changed_at, details, open_key) \
         SELECT 'dup', definition, object_kind, object_row, object_id, severity, raised_at, \
         changed_at, details, open_key FROM o2ims_alarms WHERE open_key IS NOT NULL",
    )
    .execute(app.state.db.pool())
    .await;
    assert!(dup.is_err(), "a duplicate open alarm was stored");
    let cloud = cloud(app).await;
    assert_eq!(a[0]["objectId"], cloud.id("machine", m).to_string());
    assert_eq!(
        a[0]["objectTypeId"],
        cloud
            .named_id("resourceType", "bare-metal-server")
            .to_string()
    );
    // The objectId is the inventory's resourceId.
    let pools = app
        .get("/o2ims-infrastructureInventory/v1/resourcePools")
        .await;
    let pool = pools.body[0]["resourcePoolId"].as_str().expect("pool");
    let res = app
        .get(&format!(
            "/o2ims-infrastructureInventory/v1/resourcePools/{pool}/resources"
        ))
        .await;
    assert_eq!(res.body[0]["resourceId"], a[0]["objectId"]);
    set_machine_status(app, m, "DEPLOYING").await;
    assert_eq!(evaluate(app).await.cleared, 1);
    assert_cleared(&named(app, "machine-provisioning-failed").await[0]);
    // Failing again, then deleted: cleared.
    set_machine_status(app, m, "ERROR").await;
    assert_eq!(evaluate(app).await.raised, 1);
    let r = app.delete(&format!("/api/machines/{m}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(evaluate(app).await.cleared, 1);
    let all = named(app, "machine-provisioning-failed").await;
    assert_eq!(all.len(), 2);
    all.iter().for_each(assert_cleared);
}
dual_test!(machine_alarms);

async fn pool_alarm(app: &TestApp) {
    let r = app
        .post(
            "/api/ippools",
            json!({"cidr": "10.9.0.0/29", "gateway": "10.9.0.1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["size"], 5);
    let pool_id = r.body["id"].as_i64().expect("id");
    register_worker(app, "edge-p").await;
    for i in 2..=5 {
        let body = json!({"worker_id": "edge-p",
            "lease": lease(&format!("10.9.0.{i}"), &format!("02:00:00:00:09:0{i}"), "active")});
        ok(app, "/api/ims-worker/report_lease", body).await;
    }
    // 4 of 5 (80 %): nothing.
    assert_eq!(evaluate(app).await.raised, 0);
    let body = json!({"worker_id": "edge-p",
        "lease": lease("10.9.0.6", "02:00:00:00:09:06", "active")});
    ok(app, "/api/ims-worker/report_lease", body).await;
    // 5 of 5: raised.
    assert_eq!(evaluate(app).await.raised, 1);
    let a = named(app, "ip-pool-usage-high").await;
    assert_open(&a[0], 3);
    assert_eq!(a[0]["extensions"]["objectName"], "10.9.0.0/29");
    assert_eq!(a[0]["extensions"]["details"]["used"], 5);
    assert_eq!(a[0]["objectClass"], "ims.control.IpPool");
    let cloud = cloud(app).await;
    assert_eq!(a[0]["objectId"], cloud.id("ipPool", pool_id).to_string());
    // One released: 4 of 5 = 80 % < 85 %: cleared.
    let body = json!({"worker_id": "edge-p",
        "lease": lease("10.9.0.6", "02:00:00:00:09:06", "released")});
    ok(app, "/api/ims-worker/report_lease", body).await;
    assert_eq!(evaluate(app).await.cleared, 1);
    assert_cleared(&named(app, "ip-pool-usage-high").await[0]);
}
dual_test!(pool_alarm);

async fn list_filters_and_modifications(app: &TestApp) {
    seed(app).await;
    let m1 = create_machine(app, "f-1", "02:00:00:00:02:01").await;
    register_worker(app, "edge-f").await;
    set_machine_status(app, m1, "ERROR").await;
    ok(
        app,
        "/api/ims-worker/report_error",
        json!({"worker_id": "edge-f", "error": {"message": "boom"}}),
    )
    .await;
    assert_eq!(evaluate(app).await.raised, 2);
    for prefix in MON_PREFIXES {
        let all = app.get(&format!("{prefix}/alarms")).await;
        assert_eq!(all.body.as_array().map(Vec::len), Some(2));
        let major = app
            .get(&format!("{prefix}/alarms?filter=(eq,perceivedSeverity,1)"))
            .await;
        let major = major.body.as_array().cloned().expect("array");
        assert_eq!(major.len(), 1);
        assert_eq!(major[0]["extensions"]["objectName"], "f-1");
        let by_alias = app
            .get(&format!(
                "{prefix}/alarms?filter=(eq,resourceID,{})",
                major[0]["objectId"].as_str().expect("id")
            ))
            .await;
        assert_eq!(by_alias.body.as_array().map(Vec::len), Some(1));
        let fields = app
            .get(&format!("{prefix}/alarms?fields=perceivedSeverity,extensions/alarmName&filter=(gt,perceivedSeverity,1)"))
            .await;
        let id = fields.body[0]["alarmEventRecordId"].clone();
        assert_eq!(
            fields.body,
            json!([{"alarmEventRecordId": id, "perceivedSeverity": 2,
                    "extensions": {"alarmName": "edge-service-error"}}])
        );
        let excluded = app
            .get(&format!("{prefix}/alarms?exclude_fields=extensions"))
            .await;
        assert!(excluded.body[0].get("extensions").is_none());
        assert!(excluded.body[0].get("objectClass").is_some());
        let r = app
            .get(&format!("{prefix}/alarms?filter=(eq,bogus,1)"))
            .await;
        let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(fields[0].0, "filter");
        let r = app
            .get(&format!("{prefix}/alarms?fields=a&exclude_fields=b"))
            .await;
        assert_problem(&r, StatusCode::BAD_REQUEST);
    }
    // Paging: one per page, the next page through the Link header.
    let first = app.get(&format!("{MON}/alarms?limit=1")).await;
    assert_eq!(first.body.as_array().map(Vec::len), Some(1));
    let link = first
        .headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .expect("a Link header")
        .to_owned();
    let next = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(uri, _)| uri.to_owned())
        .expect("<uri>");
    assert!(link.ends_with("rel=\"next\""), "{link}");
    let second = app.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body.as_array().map(Vec::len), Some(1));
    assert_ne!(
        second.body[0]["alarmEventRecordId"],
        first.body[0]["alarmEventRecordId"]
    );
    assert!(second.headers.get("link").is_none());
    let r = app
        .get(&format!("{MON}/alarms?nextpage_opaque_marker=bogus"))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let machine_alarm = named(app, "machine-provisioning-failed").await[0].clone();
    let id = machine_alarm["alarmEventRecordId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(machine_alarm["alarmAcknowledged"], false);
    for prefix in MON_PREFIXES {
        let one = app.get(&format!("{prefix}/alarms/{id}")).await;
        assert_eq!(one.body, machine_alarm);
    }
    let uri = format!("{MON}/alarms/{id}");
    // Errors.
    for (body, field) in [
        (json!({}), "alarmAcknowledged"),
        (
            json!({"alarmAcknowledged": true, "perceivedSeverity": 5}),
            "alarmAcknowledged",
        ),
        (json!({"alarmAcknowledged": false}), "alarmAcknowledged"),
        (json!({"perceivedSeverity": 2}), "perceivedSeverity"),
        (json!({"perceivedSeverity": 5, "note": "x"}), "note"),
    ] {
        let r = send_patch(app, &uri, &body, &app.admin_token).await;
        let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert!(fields.iter().any(|(f, _)| f == field), "{body}: {fields:?}");
    }
    let r = send_patch(app, &uri, &json!([1]), &app.admin_token).await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = send_patch(
        app,
        &format!("{MON}/alarms/{}", uuid::Uuid::nil()),
        &json!({"alarmAcknowledged": true}),
        &app.admin_token,
    )
    .await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = send_patch(
        app,
        &uri,
        &json!({"alarmAcknowledged": true}),
        &app.viewer_token,
    )
    .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    // Acknowledge (merge-patch), under the spec spelling.
    let r = send_patch(
        app,
        &format!("/O2ims_infrastructureMonitoring/v1/alarms/{id}"),
        &json!({"alarmAcknowledged": true}),
        &app.admin_token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"alarmAcknowledged": true}));
    let a = app.get(&uri).await.body;
    assert_eq!(a["alarmAcknowledged"], true);
    assert!(a["alarmAcknowledgeTime"].is_string());
    assert_aliases(&a);
    assert_open(&a, 1);
    // Clear (plain JSON).
    let r = app.patch(&uri, json!({"perceivedSeverity": 5})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"perceivedSeverity": 5}));
    assert_cleared(&app.get(&uri).await.body);
    let r = app.patch(&uri, json!({"perceivedSeverity": 5})).await;
    assert_problem(&r, StatusCode::CONFLICT);
    // The condition still holds, but the operator's clear stands ...
    assert_eq!(evaluate(app).await.raised, 0);
    assert_eq!(named(app, "machine-provisioning-failed").await.len(), 1);
    // ... until it ends and comes back.
    set_machine_status(app, m1, "DEPLOYING").await;
    evaluate(app).await;
    set_machine_status(app, m1, "ERROR").await;
    assert_eq!(evaluate(app).await.raised, 1);
    let both = named(app, "machine-provisioning-failed").await;
    assert_eq!(both.len(), 2);
    assert_open(&both[1], 1);
}
dual_test!(list_filters_and_modifications);

async fn subscription_crud(app: &TestApp) {
    let body = json!({"callback": "https://smo.example/alarms", "consumerSubscriptionId": "c-1",
        "eventFilter": ["new", "CLEAR"], "filter": "(eq,perceivedSeverity,1)",
        "alarmSubscriptionId": "ignored"});
    let r = app.post(&format!("{MON}/alarmSubscriptions"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.body.clone();
    let id = created["alarmSubscriptionId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_ne!(id, "ignored");
    assert_eq!(created["eventFilter"], json!(["NEW", "CLEAR"]));
    assert_eq!(created["consumerSubscriptionId"], "c-1");
    for prefix in MON_PREFIXES {
        let one = app.get(&format!("{prefix}/alarmSubscriptions/{id}")).await;
        assert_eq!(one.body, created);
        let list = app
            .viewer(Method::GET, &format!("{prefix}/alarmSubscriptions"), None)
            .await;
        assert_eq!(list.body, json!([created]));
    }
    // RH-style enum filter, no event filter.
    let r = app
        .post(
            &format!("{MON}/alarmSubscriptions"),
            json!({"callback": "http://127.0.0.1:9/x", "filter": "ACKNOWLEDGE"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["eventFilter"], Value::Null);
    // Every bad field at once.
    let r = app
        .post(
            &format!("{MON}/alarmSubscriptions"),
            json!({"filter": "(eq,nope,1)", "eventFilter": ["NEW", "LATER"],
                   "consumerSubscriptionId": 3}),
        )
        .await;
    let mut fields: Vec<_> = assert_problem(&r, StatusCode::BAD_REQUEST)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "callback",
            "consumerSubscriptionId",
            "eventFilter",
            "filter"
        ]
    );
    for bad in ["ftp://smo.example/", "/relative", "not a url", "http:///x"] {
        let r = app
            .post(
                &format!("{MON}/alarmSubscriptions"),
                json!({"callback": bad}),
            )
            .await;
        assert_eq!(
            assert_problem(&r, StatusCode::BAD_REQUEST)[0].0,
            "callback",
            "{bad}"
        );
    }
    let r = app
        .post(
            &format!("{MON}/alarmSubscriptions"),
            json!({"callback": "http://x/", "unknown": 1}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    let r = app
        .viewer(
            Method::POST,
            &format!("{MON}/alarmSubscriptions"),
            Some(json!({"callback": "http://x/"})),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app
        .viewer(
            Method::DELETE,
            &format!("{MON}/alarmSubscriptions/{id}"),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    let r = app
        .anonymous(Method::GET, &format!("{MON}/alarmSubscriptions"), None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    let r = app
        .delete(&format!(
            "/O2ims_infrastructureMonitoring/v1/alarmSubscriptions/{id}"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.delete(&format!("{MON}/alarmSubscriptions/{id}")).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = app.get(&format!("{MON}/alarmSubscriptions/{id}")).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}
dual_test!(subscription_crud);

async fn notifications(app: &TestApp) {
    let db = &app.state.db;
    seed(app).await;
    let m = create_machine(app, "n-1", "02:00:00:00:03:01").await;
    let (cb, url, server) = Callback::start(0).await;
    let (cb2, url2, server2) = Callback::start(0).await;
    let all = subscribe(
        app,
        json!({"callback": url, "consumerSubscriptionId": "focom-1"}),
    )
    .await;
    subscribe(app, json!({"callback": url2, "eventFilter": ["CLEAR"]})).await;
    // A dead callback: its queue does not hold up the others.
    let dead = subscribe(app, json!({"callback": "http://127.0.0.1:9/dead"})).await;
    let client = delivery::client();

    set_machine_status(app, m, "ERROR").await;
    let pass = evaluate(app).await;
    assert_eq!((pass.raised, pass.queued), (1, 2));
    let round = notify::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    assert_eq!((round.delivered, round.failed), (1, 1));
    let got = cb.take();
    assert_eq!(got.len(), 1);
    let n = &got[0];
    assert_eq!(n["notificationEventType"], 0);
    assert_eq!(n["consumerSubscriptionId"], "focom-1");
    assert_eq!(n["alarmSubscriptionId"], all);
    assert_eq!(n["globalCloudId"], n["globalCloudID"]);
    assert!(n["globalCloudId"].is_string());
    assert_aliases(n);
    assert_open(n, 1);
    let id = n["alarmEventRecordId"].as_str().expect("id").to_owned();
    assert_eq!(
        n["objectRef"],
        format!("/o2ims-infrastructureMonitoring/v1/alarms/{id}")
    );
    assert_eq!(n["objectId"], cloud(app).await.id("machine", m).to_string());
    assert!(cb2.take().is_empty());

    // Acknowledge: ACKNOWLEDGE to the first only.
    let r = app
        .patch(
            &format!("{MON}/alarms/{id}"),
            json!({"alarmAcknowledged": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    notify::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    let got = cb.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["notificationEventType"], 3);
    assert_eq!(got[0]["alarmAcknowledged"], true);
    assert!(got[0]["alarmAcknowledgeTime"].is_string());
    assert_aliases(&got[0]);

    // The condition ends: CLEAR to both.
    set_machine_status(app, m, "ACTIVE").await;
    assert_eq!(evaluate(app).await.cleared, 1);
    notify::deliver_due(db, &client, now_ms())
        .await
        .expect("deliver");
    let got = cb.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["notificationEventType"], 2);
    assert_cleared(&got[0]);
    let got2 = cb2.take();
    assert_eq!(got2.len(), 1);
    assert_eq!(got2[0]["notificationEventType"], 2);
    assert_eq!(got2[0]["alarmEventRecordId"], id);
    // Only the dead subscription's queue is left (NEW, ACKNOWLEDGE, CLEAR), retried later.
    assert_eq!(queued(db).await, 3);
    let r = app
        .delete(&format!("{MON}/alarmSubscriptions/{dead}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(queued(db).await, 0);
    server.abort();
    server2.abort();
}
dual_test!(notifications);

/// The background tasks (as `serve` starts them) raise an alarm and deliver its notification.
async fn background_tasks(app: &TestApp) {
    seed(app).await;
    let m = create_machine(app, "bg-1", "02:00:00:00:04:01").await;
    let (cb, url, server) = Callback::start(0).await;
    subscribe(app, json!({"callback": url, "eventFilter": ["NEW"]})).await;
    let tasks = monitoring::spawn(&app.state.db);
    set_machine_status(app, m, "ERROR").await;
    let got = cb.wait_received().await;
    drop(tasks);
    assert_eq!(got.len(), 1, "not raised and delivered within 10 s");
    assert_eq!(got[0]["notificationEventType"], 0);
    assert_eq!(got[0]["extensions"]["objectName"], "bg-1");
    server.abort();
}
dual_test!(background_tasks);
