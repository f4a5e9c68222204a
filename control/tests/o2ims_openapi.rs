//! The O2ims OpenAPI document (`/o2ims-infrastructureInventory/v1/openapi.json`) checked
//! against what the routes answer: every GET route under an O2ims prefix is called with real
//! data (path parameters taken from the lists above them) and each returned object is checked
//! against its documented schema (required fields, types, no undocumented fields). Also the
//! lists' paging (`limit`, `nextpage_opaque_marker`, `Link: rel="next"`).

// Test helpers may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode, header};
use ims_control::db::now_ms;
use ims_control::o2ims::monitoring::evaluator;
use serde_json::{Value, json};
use support::{TestApp, assert_problem};

const DOC: &str = "/o2ims-infrastructureInventory/v1/openapi.json";
const V1: &str = "/o2ims-infrastructureInventory/v1";

/// Checks `v` against OpenAPI 3.1 `schema` (the subset utoipa generates: `$ref`, `type`
/// (one or a list), `enum`, `properties`/`required`/`additionalProperties`, `items`,
/// `oneOf`/`anyOf`/`allOf`, `format: uuid`). An object schema with `properties` and no
/// `additionalProperties` allows no other fields. Errors go to `errors` with their JSON path.
fn check(v: &Value, schema: &Value, doc: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            errors.push(format!("{at}: unresolved $ref {r}"));
        } else {
            check(v, target, doc, at, errors);
        }
        return;
    }
    for (key, need_all) in [("allOf", true), ("oneOf", false), ("anyOf", false)] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let results: Vec<Vec<String>> = alts
                .iter()
                .map(|s| {
                    let mut e = Vec::new();
                    check(v, s, doc, at, &mut e);
                    e
                })
                .collect();
            if need_all {
                errors.extend(results.into_iter().flatten());
            } else if !results.iter().any(Vec::is_empty) {
                errors.push(format!(
                    "{at}: matches none of {key}: {:?}",
                    results.concat()
                ));
            }
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        });
        if !ok {
            errors.push(format!("{at}: {v} is not of type {types:?}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            errors.push(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("uuid") {
        if let Some(s) = v.as_str() {
            if s.parse::<uuid::Uuid>().is_err() {
                errors.push(format!("{at}: `{s}` is not a UUID"));
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, item) in list.iter().enumerate() {
            check(item, items, doc, &format!("{at}/{i}"), errors);
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(name) {
                errors.push(format!("{at}: required field `{name}` is missing"));
            }
        }
        if let Some(props) = props {
            let extra = schema.get("additionalProperties");
            for (k, child) in obj {
                match (props.get(k), extra) {
                    (Some(s), _) => check(child, s, doc, &format!("{at}/{k}"), errors),
                    (None, None | Some(Value::Bool(false))) => {
                        errors.push(format!("{at}: field `{k}` is not documented"));
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(s)) => check(child, s, doc, &format!("{at}/{k}"), errors),
                }
            }
        }
    }
}

/// Two sites, clusters and machines, and a subscription: every inventory list has objects.
async fn seed(app: &TestApp) {
    for name in ["edge-a", "edge-b"] {
        let r = app.post("/api/sites", json!({"name": name})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    for (name, site) in [("alpha", "edge-a"), ("beta", "edge-b")] {
        let r = app
            .post("/api/cluster", json!({"name": name, "site": site}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    for (cluster, host, mac, ip, status) in [
        ("alpha", "a-1", "02:00:00:00:00:01", "10.9.0.1", "ACTIVE"),
        ("alpha", "a-2", "02:00:00:00:00:02", "10.9.0.2", "INACTIVE"),
        // A failed machine raises an alarm (so the alarm routes have data too).
        ("beta", "b-1", "02:00:00:00:00:03", "10.9.1.1", "ERROR"),
    ] {
        let r = app
            .post(
                "/api/machines",
                json!({"cluster": cluster, "hostname": host, "mac": mac, "ip": ip,
                       "cpu_cores": 8, "role": "worker", "status": status}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let pass = evaluator::evaluate(&app.state.db, now_ms()).await.unwrap();
    assert!(pass.raised >= 1, "{pass:?}");
    let r = app
        .post(
            "/o2ims-infrastructureMonitoring/v1/alarmSubscriptions",
            json!({"callback": "https://smo.example/alarms", "consumerSubscriptionId": "a"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            &format!("{V1}/subscriptions"),
            json!({"callback": "https://smo.example/notify", "consumerSubscriptionId": "c"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// `path` with each `{param}` replaced by the `param` field of the first object of the list
/// above it; `None` when a list is empty.
async fn concrete(
    app: &TestApp,
    path: &str,
    lists: &mut BTreeMap<String, Value>,
) -> Option<String> {
    let mut out = String::new();
    for segment in path.split('/').skip(1) {
        if let Some(param) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !lists.contains_key(&out) {
                let r = app.get(&out).await;
                assert_eq!(r.status, StatusCode::OK, "{out}: {}", r.body);
                lists.insert(out.clone(), r.body);
            }
            let first = lists[&out].as_array()?.first()?;
            let id = first.get(param)?.as_str()?.to_owned();
            out.push('/');
            out.push_str(&id);
        } else {
            out.push('/');
            out.push_str(segment);
        }
    }
    Some(out)
}

async fn answers_match_the_document(app: &TestApp) {
    seed(app).await;
    let r = app.get(DOC).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.content_type(), "application/json");
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/oauth/token"));
    assert!(paths.contains_key(&format!("{V1}/resourcePools/{{resourcePoolId}}/resources")));
    assert!(
        paths
            .keys()
            .all(|p| p.starts_with("/o2ims-") || p.starts_with("/O2ims_") || p == "/oauth/token"),
        "only O2ims paths"
    );
    let mut lists = BTreeMap::new();
    let mut checked = Vec::new();
    let mut skipped = Vec::new();
    for (path, item) in paths {
        let Some(op) = item.get("get") else { continue };
        if path.ends_with("/openapi.json") {
            continue;
        }
        let Some(uri) = concrete(app, path, &mut lists).await else {
            skipped.push(path.clone());
            continue;
        };
        let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(!schema.is_null(), "{path}: no documented 200 JSON schema");
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        let mut errors = Vec::new();
        check(&r.body, schema, &doc, &uri, &mut errors);
        assert!(
            errors.is_empty(),
            "{uri} does not match {path}:\n{}",
            errors.join("\n")
        );
        if let Some(list) = r.body.as_array() {
            assert!(!list.is_empty(), "{uri}: empty list, nothing checked");
        }
        checked.push(path.clone());
    }
    // Every route is covered with data.
    assert!(skipped.is_empty(), "routes without data: {skipped:?}");
    assert!(checked.len() >= 4 * 14, "checked only {checked:?}");
    eprintln!(
        "checked {} GET routes; skipped (no data): {skipped:?}",
        checked.len()
    );
}
dual_test!(answers_match_the_document);

/// The checker finds what it should (so the test above can fail).
#[test]
fn the_checker_catches_mismatches() {
    let doc = json!({"components": {"schemas": {"Obj": {
        "type": "object", "required": ["id", "n"],
        "properties": {"id": {"type": "string", "format": "uuid"}, "n": {"type": "integer"},
                       "tags": {"type": "array", "items": {"type": "string"}},
                       "ext": {}, "opt": {"type": ["string", "null"]}}}}}});
    let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Obj"}});
    let good =
        json!([{"id": uuid::Uuid::nil(), "n": 1, "tags": ["a"], "ext": {"x": 1}, "opt": null}]);
    let mut e = Vec::new();
    check(&good, &schema, &doc, "", &mut e);
    assert!(e.is_empty(), "{e:?}");
    let bad = json!([{"id": "nope", "tags": [1], "extra": true, "opt": 3}]);
    check(&bad, &schema, &doc, "", &mut e);
    let text = e.join("\n");
    for needle in [
        "`n` is missing",
        "not a UUID",
        "/0/tags/0",
        "`extra` is not documented",
        "/0/opt",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

async fn the_document_needs_read_scope(app: &TestApp) {
    let r = app.anonymous(Method::GET, DOC, None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED);
    let r = app.viewer(Method::GET, DOC, None).await;
    assert_eq!(r.status, StatusCode::OK);
}
dual_test!(the_document_needs_read_scope);

async fn lists_are_paged(app: &TestApp) {
    for i in 0..5 {
        let r = app
            .post("/api/sites", json!({"name": format!("s-{i}")}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let all = app.get(&format!("{V1}/resourcePools")).await;
    assert_eq!(all.body.as_array().unwrap().len(), 5);
    assert!(!all.headers.contains_key(header::LINK), "one page");
    let mut uri = format!("{V1}/resourcePools?limit=2&fields=name");
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        pages += 1;
        let page = r.body.as_array().unwrap();
        assert!(page.len() <= 2);
        names.extend(page.iter().map(|p| p["name"].as_str().unwrap().to_owned()));
        let Some(link) = r.headers.get(header::LINK) else {
            break;
        };
        let link = link.to_str().unwrap();
        assert!(link.ends_with(">; rel=\"next\""), "{link}");
        assert!(
            link.contains("limit=2") && link.contains("fields=name"),
            "{link}"
        );
        uri = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        assert!(uri.contains("nextpage_opaque_marker="), "{uri}");
        assert!(pages < 10, "bounded");
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["s-0", "s-1", "s-2", "s-3", "s-4"]);
    // Filters apply before paging.
    let r = app
        .get(&format!(
            "{V1}/resourcePools?limit=1&filter=(in,name,s-1,s-3)"
        ))
        .await;
    assert_eq!(r.body.as_array().unwrap()[0]["name"], "s-1");
    assert!(r.headers.contains_key(header::LINK));
    for bad in ["nextpage_opaque_marker=garbage", "limit=0", "limit=5000"] {
        let r = app.get(&format!("{V1}/resourcePools?{bad}")).await;
        let fields = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(fields.len(), 1, "{bad}");
        assert!(bad.starts_with(&fields[0].0), "{bad}: {fields:?}");
    }
    // Subscriptions page the same way.
    for i in 0..3 {
        let r = app
            .post(
                &format!("{V1}/subscriptions"),
                json!({"callback": format!("http://127.0.0.1:9/{i}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.get(&format!("{V1}/subscriptions?limit=2")).await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert!(r.headers.contains_key(header::LINK));
}
dual_test!(lists_are_paged);

/// The `oauth2` scope documented on each operation is the one its handler requires: a client
/// holding only that scope passes authorisation, clients holding only another get 403.
async fn documented_scopes_are_enforced(app: &TestApp) {
    use ims_control::auth::{clients, password, scope::Scope};
    let mut tokens = BTreeMap::new();
    for scope in Scope::ALL {
        let id = scope.as_str().replace(':', "-");
        let secret = clients::generate_secret();
        let hash = password::hash_password(&secret).unwrap();
        let mut conn = app.state.db.pool().acquire().await.unwrap();
        clients::create(&mut conn, &id, &hash, &[scope], "")
            .await
            .unwrap();
        let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
        let r = app
            .send(
                axum::http::Request::post("/oauth/token")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(axum::body::Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        tokens.insert(
            scope.as_str().to_owned(),
            r.body["access_token"].as_str().unwrap().to_owned(),
        );
    }
    let doc = app.get(DOC).await.body;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri: String = path
            .split('/')
            .map(|s| if s.starts_with('{') { "999999" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().unwrap() {
            let Some(needed) = op["security"]
                .as_array()
                .and_then(|s| s.iter().find_map(|r| r["oauth2"][0].as_str()))
            else {
                continue;
            };
            operations += 1;
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (m != Method::GET && m != Method::DELETE).then(|| json!({}));
            for (scope, token) in &tokens {
                let r = app.call(m.clone(), &uri, Some(token), body.clone()).await;
                if scope == needed {
                    assert!(
                        r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                        "{method} {path} with {scope}: {} {}",
                        r.status,
                        r.body
                    );
                } else {
                    assert_eq!(
                        r.status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} with {scope} (needs {needed}): {}",
                        r.body
                    );
                }
            }
        }
    }
    assert!(operations > 40, "{operations}");
}
dual_test!(documented_scopes_are_enforced);
