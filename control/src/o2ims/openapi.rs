//! The OpenAPI 3 document of the O2ims API alone, served at `openapi.json` under each
//! inventory prefix (`/o2ims-infrastructureInventory/v1/openapi.json`, …) for SMO/FOCOM
//! developers.
//!
//! It is cut from the control plane's whole generated document ([`crate::api::openapi`], also
//! served at `/api/openapi.json`): every path under an O2ims API name (`/o2ims-…` and the
//! spec's `/O2ims_…` spellings: inventory, monitoring, whatever is routed) plus the OAuth2
//! token endpoint `/oauth/token`, with only the component schemas those paths reference. So
//! it documents exactly the handlers that serve the routes; `control/tests/o2ims_openapi.rs`
//! checks real answers against it. It also describes the OAuth2 client-credentials scheme
//! (`oauth2`, token URL `/oauth/token`) as an alternative to the `bearer` scheme of each
//! protected operation, with the scope the operation needs ([`operation_scope`]).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::scope::{Scope, ScopeRead};
use crate::state::AppState;

/// Whether `path` belongs in the O2ims document.
#[must_use]
pub fn is_o2ims_path(path: &str) -> bool {
    path == "/oauth/token" || path.starts_with("/o2ims-") || path.starts_with("/O2ims_")
}

/// The scope an O2ims operation needs: reads `o2ims:read`, subscription writes
/// `o2ims:subscribe`, other writes (alarm acknowledgement and clearing, alarm service
/// configuration) `o2ims:alarms` — as the handlers' extractors ([`crate::auth::scope`]) require.
#[must_use]
pub fn operation_scope(method: &str, path: &str) -> Scope {
    if method.eq_ignore_ascii_case("get") {
        Scope::Read
    } else if path.contains("ubscriptions") {
        Scope::Subscribe
    } else {
        Scope::Alarms
    }
}

/// Adds the `oauth2` client-credentials scheme and, to each operation secured with `bearer`,
/// the alternative `{"oauth2": [its scope]}`.
fn add_oauth2(doc: &mut Value) {
    let scopes: serde_json::Map<String, Value> = Scope::ALL
        .iter()
        .map(|s| {
            let what = match s {
                Scope::Read => "read the inventory, alarms and subscriptions",
                Scope::Subscribe => "create and delete subscriptions",
                Scope::Alarms => "acknowledge and clear alarms, configure the alarm service",
            };
            (s.as_str().to_owned(), Value::from(what))
        })
        .collect();
    doc["components"]["securitySchemes"]["oauth2"] = serde_json::json!({
        "type": "oauth2",
        "description": "Client credentials of a client made with `ims-control client add`",
        "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": scopes}}
    });
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            let Some(security) = op.get_mut("security").and_then(Value::as_array_mut) else {
                continue;
            };
            if security.is_empty() {
                continue;
            }
            let scope = operation_scope(method, path).as_str();
            security.push(serde_json::json!({ "oauth2": [scope] }));
        }
    }
}

/// Every `$ref` target (`#/components/schemas/NAME` → `NAME`) inside `v`.
fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    if let Some(name) = child
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    {
                        out.insert(name.to_owned());
                    }
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// The O2ims document as JSON: the O2ims paths of `full` and the schemas they reach.
#[must_use]
pub fn o2ims_document(full: &Value) -> Value {
    let mut doc = full.clone();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        paths.retain(|p, _| is_o2ims_path(p));
    }
    // The schemas reachable from the kept paths (transitively).
    let mut reached = BTreeSet::new();
    collect_refs(&doc["paths"], &mut reached);
    let schemas = full["components"]["schemas"].clone();
    let mut pending: Vec<String> = reached.iter().cloned().collect();
    while let Some(name) = pending.pop() {
        let mut found = BTreeSet::new();
        collect_refs(&schemas[name.as_str()], &mut found);
        for f in found {
            if reached.insert(f.clone()) {
                pending.push(f);
            }
        }
    }
    if let Some(map) = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    {
        map.retain(|name, _| reached.contains(name));
    }
    add_oauth2(&mut doc);
    doc["info"]["title"] = Value::from("ims-control O2ims API");
    doc["info"]["description"] = Value::from(
        "The O-RAN O2ims interface of ims-control: infrastructure inventory and monitoring, \
         their subscriptions, and the OAuth2 client-credentials token endpoint. Send \
         `Authorization: Bearer <token>` with a token from POST /oauth/token (scopes \
         o2ims:read, o2ims:subscribe, o2ims:alarms) or a user's access token.",
    );
    doc
}

fn served() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let full = serde_json::to_value(crate::api::openapi()).unwrap_or(Value::Null);
        serde_json::to_string_pretty(&o2ims_document(&full)).unwrap_or_default()
    })
}

/// The OpenAPI 3 document of the O2ims routes.
#[utoipa::path(get, path = "/openapi.json", tag = "o2ims",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenAPI 3 document of the O2ims API", content_type = "application/json"),
        (status = 401, description = "No or invalid token", body = crate::error::Problem),
        (status = 403, description = "The caller lacks the o2ims:read scope", body = crate::error::Problem)))]
async fn o2ims_openapi(_caller: ScopeRead) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        served(),
    )
        .into_response()
}

/// The route of the document (relative to an inventory version prefix).
#[must_use]
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(o2ims_openapi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_o2ims_paths_and_their_schemas() {
        let full = json!({
            "openapi": "3.1.0", "info": {"title": "x", "version": "1"},
            "paths": {
                "/api/sites": {"get": {"responses": {"200": {"content": {"application/json":
                    {"schema": {"$ref": "#/components/schemas/Site"}}}}}}},
                "/o2ims-infrastructureInventory/v1/resourcePools": {"get": {"responses":
                    {"200": {"content": {"application/json": {"schema":
                    {"$ref": "#/components/schemas/Pool"}}}}},
                    "security": [{"bearer": []}]}},
                "/o2ims-infrastructureInventory/v1/subscriptions": {"post": {"responses": {},
                    "security": [{"bearer": []}]}},
                "/oauth/token": {"post": {}}
            },
            "components": {"schemas": {
                "Site": {"type": "object"},
                "Pool": {"type": "object", "properties": {"loc": {"$ref": "#/components/schemas/Loc"}}},
                "Loc": {"type": "object"}
            }}
        });
        let doc = o2ims_document(&full);
        let paths: Vec<_> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            paths,
            [
                "/o2ims-infrastructureInventory/v1/resourcePools",
                "/o2ims-infrastructureInventory/v1/subscriptions",
                "/oauth/token"
            ]
        );
        let pools = &doc["paths"]["/o2ims-infrastructureInventory/v1/resourcePools"]["get"];
        assert_eq!(
            pools["security"],
            json!([{"bearer": []}, {"oauth2": ["o2ims:read"]}])
        );
        let subs = &doc["paths"]["/o2ims-infrastructureInventory/v1/subscriptions"]["post"];
        assert_eq!(subs["security"][1], json!({"oauth2": ["o2ims:subscribe"]}));
        assert_eq!(
            doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"],
            "/oauth/token"
        );
        assert_eq!(
            operation_scope("patch", "/o2ims-infrastructureMonitoring/v1/alarms/{id}"),
            Scope::Alarms
        );
        let schemas: Vec<_> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(schemas, ["Loc", "Pool"]);
    }
}
