//! The O2ims inventory API: every endpoint under the three spellings, stable ids across two
//! app instances on one database, SOL013 filters and selectors, 401, 404 and 405.

mod support;

use axum::http::{Method, StatusCode};
use ims_control::auth::AuthSettings;
use ims_control::db::Db;
use ims_control::state::AppState;
use serde_json::{Value, json};
use support::{Backing, TestApp, assert_problem};

const V1: &str = "/o2ims-infrastructureInventory/v1";
const PREFIXES: [&str; 4] = [
    "/o2ims-infrastructureInventory/v1",
    "/o2ims-infrastructureInventory/v2",
    "/O2ims_infrastructureInventory/v1",
    "/O2ims_infrastructureInventory/v2",
];

/// Two sites; `edge-a` has cluster `alpha` with three machines, `edge-b` cluster `beta` with
/// one; cluster `gamma` has no site.
async fn seed(app: &TestApp) {
    for (name, description) in [("edge-a", "rack 4"), ("edge-b", "rack 9")] {
        let r = app
            .post(
                "/api/sites",
                json!({"name": name, "description": description}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    for (name, site) in [
        ("alpha", Some("edge-a")),
        ("beta", Some("edge-b")),
        ("gamma", None),
    ] {
        let r = app
            .post("/api/cluster", json!({"name": name, "site": site}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    for (cluster, host, mac, ip, cores, role) in [
        (
            "alpha",
            "a-1",
            "02:00:00:00:00:01",
            "10.0.0.1",
            16,
            "master",
        ),
        (
            "alpha",
            "a-2",
            "02:00:00:00:00:02",
            "10.0.0.2",
            32,
            "worker",
        ),
        (
            "alpha",
            "a-3",
            "02:00:00:00:00:03",
            "10.0.0.3",
            8,
            "storage",
        ),
        ("beta", "b-1", "02:00:00:00:00:04", "10.0.1.1", 4, "worker"),
        ("gamma", "g-1", "02:00:00:00:00:05", "10.0.2.1", 2, "worker"),
    ] {
        let r = app
            .post(
                "/api/machines",
                json!({"cluster": cluster, "hostname": host, "mac": mac, "ip": ip,
                       "cpu_cores": cores, "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

fn array(r: &support::Resp) -> &Vec<Value> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body.as_array().expect("a JSON array")
}

fn by_name<'a>(list: &'a [Value], key: &str, name: &str) -> &'a Value {
    list.iter()
        .find(|v| v[key] == name)
        .unwrap_or_else(|| panic!("no {key}={name} in {list:?}"))
}

fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

async fn pool_id(app: &TestApp, prefix: &str, site: &str) -> String {
    let r = app.get(&format!("{prefix}/resourcePools")).await;
    s(&by_name(array(&r), "name", site)["resourcePoolId"]).to_owned()
}

async fn every_endpoint_under_every_spelling(app: &TestApp) {
    seed(app).await;
    let mut cloud_ids = Vec::new();
    for p in PREFIXES {
        let cloud = app.get(p).await;
        assert_eq!(cloud.status, StatusCode::OK, "{p}: {}", cloud.body);
        let ocloud = s(&cloud.body["oCloudId"]).to_owned();
        assert_eq!(ocloud.len(), 36);
        assert_eq!(
            cloud.body["globalCloudId"],
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(cloud.body["name"], "ims-control");
        assert!(s(&cloud.body["serviceUri"]).starts_with("http"));
        assert!(cloud.body["extensions"].is_object());
        cloud_ids.push(ocloud.clone());

        let v = app.get(&format!("{p}/api_versions")).await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(v.body["uriPrefix"], p);
        let major = &p[p.len() - 1..];
        let versions = v.body["apiVersions"].as_array().expect("versions");
        assert_eq!(versions.len(), 1, "{}", v.body);
        assert!(s(&versions[0]["version"]).starts_with(major));

        let types = app.get(&format!("{p}/resourceTypes")).await;
        let types = array(&types);
        assert_eq!(types.len(), 1);
        assert_eq!(types[0]["resourceKind"], "PHYSICAL");
        let tid = s(&types[0]["resourceTypeId"]);
        let one = app.get(&format!("{p}/resourceTypes/{tid}")).await;
        assert_eq!(one.body, types[0]);

        let pools = app.get(&format!("{p}/resourcePools")).await;
        let pools = array(&pools).clone();
        assert_eq!(pools.len(), 2);
        let a = by_name(&pools, "name", "edge-a");
        assert_eq!(a["description"], "rack 4");
        assert_eq!(a["oCloudId"], ocloud.as_str());
        let pid = s(&a["resourcePoolId"]);
        let one = app.get(&format!("{p}/resourcePools/{pid}")).await;
        assert_eq!(&one.body, a);

        let res = app.get(&format!("{p}/resourcePools/{pid}/resources")).await;
        let res = array(&res).clone();
        assert_eq!(res.len(), 3, "{res:?}");
        let a1 = by_name(&res, "description", "a-1");
        assert_eq!(a1["resourcePoolId"], pid);
        assert_eq!(a1["resourceTypeId"], tid);
        assert_eq!(a1["globalAssetId"], "02:00:00:00:00:01");
        let ext = &a1["extensions"];
        assert_eq!(ext["hostname"], "a-1");
        assert_eq!(ext["ip"], "10.0.0.1");
        assert_eq!(ext["mac"], "02:00:00:00:00:01");
        assert_eq!(ext["cpuCores"], 16);
        assert_eq!(ext["role"], "MASTER");
        assert_eq!(ext["osType"], "LINUX");
        assert!(ext["status"].is_string() && ext["health"].is_string());
        let rid = s(&a1["resourceId"]);
        let one = app
            .get(&format!("{p}/resourcePools/{pid}/resources/{rid}"))
            .await;
        assert_eq!(&one.body, a1);
        // A resource of another pool is not found through this one.
        let b = s(&by_name(&pools, "name", "edge-b")["resourcePoolId"]);
        let r = app
            .get(&format!("{p}/resourcePools/{b}/resources/{rid}"))
            .await;
        assert_problem(&r, StatusCode::NOT_FOUND);

        let dms = app.get(&format!("{p}/deploymentManagers")).await;
        let dms = array(&dms).clone();
        assert_eq!(dms.len(), 3);
        let alpha = by_name(&dms, "name", "alpha");
        assert_eq!(alpha["capacity"]["cpu"], 56);
        assert_eq!(alpha["capacity"]["machines"], 3);
        assert_eq!(alpha["extensions"]["siteName"], "edge-a");
        assert_eq!(alpha["supportedLocations"][0], a["globalLocationId"]);
        assert_eq!(a1["groups"][0], alpha["deploymentManagerId"]);
        let gamma = by_name(&dms, "name", "gamma");
        assert_eq!(gamma["supportedLocations"], json!([]));
        let did = s(&alpha["deploymentManagerId"]);
        let one = app.get(&format!("{p}/deploymentManagers/{did}")).await;
        assert_eq!(&one.body, alpha);

        let locs = app.get(&format!("{p}/locations")).await;
        let locs = array(&locs).clone();
        assert_eq!(locs.len(), 2);
        let la = by_name(&locs, "name", "edge-a");
        assert_eq!(la["globalLocationId"], a["globalLocationId"]);
        let lid = s(&la["globalLocationId"]);
        let one = app.get(&format!("{p}/locations/{lid}")).await;
        assert_eq!(&one.body, la);

        let sites = app.get(&format!("{p}/oCloudSites")).await;
        let sites = array(&sites).clone();
        assert_eq!(sites.len(), 2);
        let sa = by_name(&sites, "name", "edge-a");
        assert_eq!(sa["oCloudSiteId"], a["oCloudSiteId"]);
        assert_eq!(sa["resourcePools"], json!([pid]));
        assert_eq!(la["oCloudSiteIds"], json!([sa["oCloudSiteId"]]));
        let sid = s(&sa["oCloudSiteId"]);
        let one = app.get(&format!("{p}/oCloudSites/{sid}")).await;
        assert_eq!(&one.body, sa);
    }
    cloud_ids.dedup();
    assert_eq!(cloud_ids.len(), 1, "one O-Cloud id under every prefix");

    for name in [
        "/o2ims-infrastructureInventory",
        "/O2ims_infrastructureInventory",
    ] {
        let v = app.get(&format!("{name}/api_versions")).await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(v.body["uriPrefix"], name);
        let list: Vec<&str> = v.body["apiVersions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| s(&v["version"]))
            .collect();
        assert_eq!(list, ["1.0.0", "2.0.0"]);
    }
    // Trailing slashes are optional.
    let r = app.get(&format!("{V1}/")).await;
    assert_eq!(r.status, StatusCode::OK);
}

dual_test!(every_endpoint_under_every_spelling);

/// A second app on the same database (another replica, or this one after a restart).
async fn second_instance(app: &TestApp) -> TestApp {
    let db = match &app.backing {
        Backing::Sqlite(dir) => Db::open_data_dir(dir.path()).await.expect("open"),
        Backing::Postgres(name) => {
            let url = support::pg_url_for(&support::pg_admin_url(), name);
            Db::connect(&url, 4).await.expect("connect")
        }
    };
    let state = AppState::new(db, AuthSettings::default())
        .await
        .expect("state");
    TestApp {
        state,
        admin_token: app.admin_token.clone(),
        viewer_token: app.viewer_token.clone(),
        // Never finished: the first app owns the database.
        backing: Backing::Postgres(String::new()),
    }
}

async fn ids_are_stable_across_instances(app: &TestApp) {
    seed(app).await;
    let other = second_instance(app).await;
    for path in [
        String::new(),
        "/resourceTypes".to_owned(),
        "/resourcePools".to_owned(),
        "/deploymentManagers".to_owned(),
        "/locations".to_owned(),
        "/oCloudSites".to_owned(),
    ] {
        let a = app.get(&format!("{V1}{path}")).await;
        let b = other.get(&format!("{V1}{path}")).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert_eq!(a.body, b.body, "{path}");
    }
    let pid = pool_id(app, V1, "edge-a").await;
    let uri = format!("{V1}/resourcePools/{pid}/resources");
    assert_eq!(app.get(&uri).await.body, other.get(&uri).await.body);
    // The viewer reads too.
    let r = app.viewer(Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK);
    other.state.db.close().await;
}

dual_test!(ids_are_stable_across_instances);

async fn filters_and_selectors(app: &TestApp) {
    seed(app).await;
    let names = |r: &support::Resp, key: &str| -> Vec<String> {
        let mut v: Vec<String> = array(r).iter().map(|o| s(&o[key]).to_owned()).collect();
        v.sort();
        v
    };
    let pools = format!("{V1}/resourcePools");
    let r = app.get(&format!("{pools}?filter=(eq,name,edge-b)")).await;
    assert_eq!(names(&r, "name"), ["edge-b"]);
    let r = app.get(&format!("{pools}?filter=(neq,name,edge-b)")).await;
    assert_eq!(names(&r, "name"), ["edge-a"]);
    let r = app
        .get(&format!(
            "{pools}?filter=(cont,description,rack);(in,name,edge-a,x)"
        ))
        .await;
    assert_eq!(names(&r, "name"), ["edge-a"]);
    let r = app
        .get(&format!("{pools}?filter=(eq,extensions/clusterCount,1)"))
        .await;
    assert_eq!(names(&r, "name"), ["edge-a", "edge-b"]);
    let r = app.get(&format!("{pools}?fields=name")).await;
    for p in array(&r) {
        let keys: Vec<&String> = p.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["name", "resourcePoolId"], "{p}");
    }
    let r = app
        .get(&format!("{pools}?exclude_fields=extensions,location"))
        .await;
    for p in array(&r) {
        assert!(p.get("extensions").is_none() && p.get("location").is_none());
        assert!(p.get("name").is_some());
    }
    let r = app.get(&format!("{pools}?all_fields")).await;
    assert!(array(&r)[0].get("extensions").is_some());
    let r = app.get(&format!("{pools}?exclude_default")).await;
    assert_eq!(array(&r).len(), 2);

    let pid = pool_id(app, V1, "edge-a").await;
    let res = format!("{V1}/resourcePools/{pid}/resources");
    let r = app
        .get(&format!("{res}?filter=(eq,extensions/role,WORKER)"))
        .await;
    assert_eq!(names(&r, "description"), ["a-2"]);
    let r = app
        .get(&format!("{res}?filter=(gte,extensions/cpuCores,16)"))
        .await;
    assert_eq!(names(&r, "description"), ["a-1", "a-2"]);
    let r = app
        .get(&format!(
            "{res}?filter=(nin,extensions/role,MASTER);(lt,extensions/cpuCores,10)"
        ))
        .await;
    assert_eq!(names(&r, "description"), ["a-3"]);
    let r = app
        .get(&format!("{res}?filter=(eq,extensions/ip,'10.0.0.2')"))
        .await;
    assert_eq!(names(&r, "description"), ["a-2"]);
    let r = app.get(&format!("{res}?fields=extensions/hostname")).await;
    for m in array(&r) {
        let ext = m["extensions"].as_object().expect("extensions");
        assert_eq!(ext.len(), 1, "{m}");
        assert!(m.get("resourceId").is_some() && m.get("description").is_none());
    }

    // Malformed parameters: 400 naming the parameter.
    for (query, parameter) in [
        ("filter=(like,name,x)", "filter"),
        ("filter=(eq,name)", "filter"),
        ("filter=eq,name,x", "filter"),
        ("filter=(eq,nothing,x)", "filter"),
        ("fields=nothing", "fields"),
        ("fields=name&exclude_fields=name", "exclude_fields"),
        ("all_fields&fields=name", "all_fields"),
    ] {
        let r = app.get(&format!("{pools}?{query}")).await;
        let errors = assert_problem(&r, StatusCode::BAD_REQUEST);
        assert_eq!(errors.len(), 1, "{query}: {}", r.body);
        assert_eq!(errors[0].0, parameter, "{query}: {}", r.body);
        assert!(s(&r.body["detail"]).contains(parameter));
    }
    let r = app
        .get(&format!("{res}?filter=(gt,extensions/cpuCores,1,2)"))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
}

dual_test!(filters_and_selectors);

async fn errors_are_problems(app: &TestApp) {
    seed(app).await;
    let pid = pool_id(app, V1, "edge-a").await;
    let paths = [
        String::new(),
        "/api_versions".to_owned(),
        "/resourceTypes".to_owned(),
        "/resourcePools".to_owned(),
        format!("/resourcePools/{pid}"),
        format!("/resourcePools/{pid}/resources"),
        "/deploymentManagers".to_owned(),
        "/locations".to_owned(),
        "/oCloudSites".to_owned(),
    ];
    for p in &paths {
        let r = app.anonymous(Method::GET, &format!("{V1}{p}"), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
        let r = app
            .call(Method::GET, &format!("{V1}{p}"), Some("not-a-token"), None)
            .await;
        assert_problem(&r, StatusCode::UNAUTHORIZED);
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let r = app
                .call(m.clone(), &format!("{V1}{p}"), Some(&app.admin_token), None)
                .await;
            assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED);
            assert!(r.headers.contains_key("allow"), "{m} {p}");
        }
    }
    let unknown = "6f1c1d4e-0000-5000-8000-000000000000";
    for p in [
        format!("/resourceTypes/{unknown}"),
        format!("/resourcePools/{unknown}"),
        "/resourcePools/not-a-uuid".to_owned(),
        format!("/resourcePools/{unknown}/resources"),
        format!("/resourcePools/{unknown}/resources/{unknown}"),
        format!("/resourcePools/{pid}/resources/{unknown}"),
        format!("/deploymentManagers/{unknown}"),
        format!("/locations/{unknown}"),
        format!("/oCloudSites/{unknown}"),
        "/oCloudSites/42".to_owned(),
    ] {
        let r = app.get(&format!("{V1}{p}")).await;
        assert_problem(&r, StatusCode::NOT_FOUND);
    }
    // A pool id is not a site id, nor a location id.
    let r = app.get(&format!("{V1}/oCloudSites/{pid}")).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    let r = app.get(&format!("{V1}/locations/{pid}")).await;
    assert_problem(&r, StatusCode::NOT_FOUND);
    // Unknown versions and names are not routed.
    let r = app.get("/o2ims-infrastructureInventory/v3").await;
    assert_problem(&r, StatusCode::NOT_FOUND);
}

dual_test!(errors_are_problems);

async fn global_cloud_id_is_settable(app: &TestApp) {
    let before = app.get(V1).await.body;
    let id = "1a2b3c4d-1111-4222-8333-444455556666";
    ims_control::o2ims::set_global_cloud_id(&app.state.db, id.parse().expect("uuid"))
        .await
        .expect("set");
    let after = app.get(V1).await.body;
    assert_eq!(after["globalCloudId"], id);
    assert_eq!(after["oCloudId"], before["oCloudId"]);
}

dual_test!(global_cloud_id_is_settable);
