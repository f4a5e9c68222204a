//! The OpenAPI document and the router agree: every documented operation is served (never the
//! router's 404 fallback, never 405), every other method on a documented path is 405, every
//! path DESIGN.md promises is documented, and every operation except the probes and the token
//! endpoints needs a bearer token (the OpenAPI document too).

mod support;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use support::TestApp;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Paths DESIGN.md ("Interfaces") names, as documented (no trailing slash).
const PROMISED: &[&str] = &[
    "/api/token",
    "/api/token/refresh",
    "/api/cluster",
    "/api/cluster/{id}",
    "/api/cluster/{id}/add_machine",
    "/api/cluster/{cid}/machines/{mid}",
    "/api/machines",
    "/api/machines/{id}",
    "/api/sites",
    "/api/boot-profiles",
    "/api/workers",
    "/api/leases",
    "/api/ippools",
    "/api/dhcp-config",
    "/api/tftp-config",
    "/api/machines/{id}/metrics",
    "/api/machines/{id}/events",
    "/api/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/o2ims-infrastructureInventory/api_versions",
    "/O2ims_infrastructureInventory/api_versions",
    "/o2ims-infrastructureInventory/v1",
    "/o2ims-infrastructureInventory/v1/api_versions",
    "/o2ims-infrastructureInventory/v1/resourceTypes",
    "/o2ims-infrastructureInventory/v1/resourceTypes/{resourceTypeId}",
    "/o2ims-infrastructureInventory/v1/resourcePools",
    "/o2ims-infrastructureInventory/v1/resourcePools/{resourcePoolId}",
    "/o2ims-infrastructureInventory/v1/resourcePools/{resourcePoolId}/resources",
    "/o2ims-infrastructureInventory/v1/resourcePools/{resourcePoolId}/resources/{resourceId}",
    "/o2ims-infrastructureInventory/v1/deploymentManagers",
    "/o2ims-infrastructureInventory/v1/deploymentManagers/{deploymentManagerId}",
    "/o2ims-infrastructureInventory/v1/locations",
    "/o2ims-infrastructureInventory/v1/locations/{globalLocationId}",
    "/o2ims-infrastructureInventory/v1/oCloudSites",
    "/o2ims-infrastructureInventory/v1/oCloudSites/{oCloudSiteId}",
    "/o2ims-infrastructureInventory/v2",
    "/o2ims-infrastructureInventory/v2/resourcePools/{resourcePoolId}/resources",
    "/O2ims_infrastructureInventory/v1",
    "/O2ims_infrastructureInventory/v1/resourcePools",
    "/O2ims_infrastructureInventory/v2",
    "/O2ims_infrastructureInventory/v2/oCloudSites",
    "/o2ims-infrastructureInventory/v1/subscriptions",
    "/o2ims-infrastructureInventory/v1/subscriptions/{subscriptionId}",
    "/o2ims-infrastructureInventory/v2/subscriptions",
    "/O2ims_infrastructureInventory/v1/subscriptions/{subscriptionId}",
];

/// The issue: every route except the probes needs a bearer token (and logging in cannot).
const PUBLIC: &[&str] = &[
    "/api/token",
    "/api/token/refresh",
    // The OAuth2 token endpoint authenticates the client itself (HTTP Basic or form fields).
    "/oauth/token",
    "/healthz",
    "/readyz",
    "/metrics",
];

fn concrete(path: &str) -> String {
    // Any number works: the point is that routing reaches a handler.
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "999999" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.to_uppercase().as_bytes()).expect("method")
}

async fn router_matches_document(app: &TestApp) {
    let doc = app.get("/api/openapi.json").await.body;
    let paths = doc["paths"].as_object().expect("paths");
    for p in PROMISED {
        assert!(paths.contains_key(*p), "{p} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        let uri = concrete(path);
        for m in METHODS {
            let documented = item.get(m).is_some();
            let body = (m != "get" && m != "delete").then(|| Value::Object(Default::default()));
            let r = app
                .call(method(m), &uri, Some(&app.admin_token), body)
                .await;
            if documented {
                operations += 1;
                assert_ne!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path}: {}",
                    r.body
                );
                assert_ne!(
                    r.body["detail"].as_str(),
                    Some("route not found"),
                    "{m} {path} is documented but not routed"
                );
                let op = &item[m];
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert_eq!(
                    secured,
                    !PUBLIC.contains(&path.as_str()),
                    "{m} {path}: security requirement"
                );
                if secured {
                    let anon = app.anonymous(method(m), &uri, None).await;
                    assert_eq!(
                        anon.status,
                        StatusCode::UNAUTHORIZED,
                        "{m} {path} without a token"
                    );
                }
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is served but not documented: {}",
                    r.body
                );
            }
        }
    }
    assert!(operations > 50, "only {operations} operations documented");
}

dual_test!(router_matches_document);
