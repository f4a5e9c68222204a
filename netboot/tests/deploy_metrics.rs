//! Every metric that `deploy/prometheus/alerts.yml` and `deploy/grafana/ims-dashboard.json`
//! query is really exported by the daemons.
//!
//! A throw-away site in network namespaces (root needed, like the other netns tests) runs the
//! real `ims-control serve` (SQLite) and the real `netbootd` enrolled with it (the join token
//! passed through `NETBOOTD_JOIN_TOKEN`, as the Kubernetes init container does). A machine is
//! registered over REST, boots with busybox udhcpc, fetches its boot file with tftp-hpa and over
//! HTTP, so the DHCP, TFTP, HTTP and uplink series exist. Then both `/metrics` pages are read
//! and every metric name found in the rules' expressions and the dashboard's queries must be a
//! sample name on one of them (`_bucket`/`_sum`/`_count` of histograms are sample names too).
//! Only Prometheus's own series (`up`, `ALERTS`) are exempt.
//!
//! `ims-control` is looked up next to this test binary (`cargo build -p ims-control`, or
//! `cargo test --workspace`).
// Tests drive real processes in real time; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

mod deploy;
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use deploy::dashboard_queries;
use serde_json::{Value, json};
use support::control::join_token;
use support::http::{http, ims_control};
use support::site::{NETBOOTD, SERVER_IP};
use support::tftp::Lab;
use support::{netns, require_root, wait_until};

const MAC: &str = "52:54:00:00:09:01";
const ADMIN_PASSWORD: &str = "deploy-metrics-admin-1";
/// ims-control's HTTP and QUIC addresses inside the server namespace.
const CONTROL_HTTP: &str = "127.0.0.1:8000";
const CONTROL_QUIC: &str = "127.0.0.1:7443";
/// Series Prometheus makes itself.
const PROMETHEUS_OWN: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// PromQL keywords that look like identifiers.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
    // Aggregation operators may put their `by (…)` before the parenthesis.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression (or a Grafana query) reads: identifiers that are not
/// functions (followed by `(`), keywords, label names (inside `{}` or the label lists of `by`,
/// `without`, `on`, `ignoring`, `group_left/right`), strings, durations or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // True after a keyword whose `( … )` is a label list.
    let mut label_list_next = false;
    let mut last_function: Option<String> = None;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                label_list_next = false;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let followed_by_paren = chars.get(j) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    label_list_next = followed_by_paren;
                } else if followed_by_paren {
                    last_function = Some(word);
                } else if !KEYWORDS.contains(&lower.as_str()) {
                    // label_values(metric, label): the second argument is a label.
                    let is_label_arg =
                        last_function.as_deref() == Some("label_values") && !names.is_empty();
                    if !is_label_arg {
                        names.insert(word);
                    }
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every `expr:` of the alert rules (multi-line block scalars included).
fn alert_expressions(text: &str) -> Vec<String> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            out.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    out
}

/// Sample names on a Prometheus text page.
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn promql_names_are_parsed() {
    let names = promql_metric_names(
        "sum by (instance, subnet) (rate(netbootd_a_total{reason=\"x y\", job=~\"a|b\"}[5m])) \
         / on (instance) group_left (site) max without (le) (b_metric offset 5m) > 0.9 \
         and time() - c:recorded > 30 * 86400 and histogram_quantile(0.99, d_bucket[$__rate_interval]) \
         unless 1e-9 < bool e",
    );
    let want: BTreeSet<String> = [
        "netbootd_a_total",
        "b_metric",
        "c:recorded",
        "d_bucket",
        "e",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, want);
    let names = promql_metric_names("label_values(netbootd_build_info, instance)");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["netbootd_build_info"]
    );
}

#[test]
fn every_metric_in_the_alerts_and_the_dashboard_is_exported() {
    require_root();
    let alerts = std::fs::read_to_string(workspace().join("deploy/prometheus/alerts.yml"))
        .expect("read alerts.yml");
    let dashboard = std::fs::read_to_string(workspace().join("deploy/grafana/ims-dashboard.json"))
        .expect("read the dashboard");
    let mut wanted: BTreeSet<(String, &str)> = BTreeSet::new();
    for e in alert_expressions(&alerts) {
        wanted.extend(
            promql_metric_names(&e)
                .into_iter()
                .map(|n| (n, "alerts.yml")),
        );
    }
    for q in dashboard_queries(&dashboard) {
        wanted.extend(
            promql_metric_names(&q)
                .into_iter()
                .map(|n| (n, "ims-dashboard.json")),
        );
    }
    assert!(wanted.len() > 20, "too few metrics found: {wanted:?}");

    let (netbootd_page, control_page) = run_site_and_scrape();
    let mut have = exported(&netbootd_page);
    have.extend(exported(&control_page));
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(n, _)| !have.contains(n) && !PROMETHEUS_OWN.contains(&n.as_str()))
        .map(|(n, file)| format!("{n} (in {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics queried but not exported by netbootd or ims-control:\n  {}\n\
         exported:\n  {}",
        missing.join("\n  "),
        have.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Starts ims-control and an enrolled netbootd in a site, boots a machine (DHCP, TFTP, HTTP)
/// and returns both `/metrics` pages.
fn run_site_and_scrape() -> (String, String) {
    let mut lab = Lab::new("deploymetrics", None);
    let ns = lab.site.server_ns.clone();
    let control_dir = lab.site.dir().join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    let control_bin = ims_control().display().to_string();
    let control_dir_s = control_dir.display().to_string();
    let password = format!("IMS_ADMIN_PASSWORD={ADMIN_PASSWORD}");
    let control = lab.site.spawn_background(
        "ims-control",
        &ns,
        &[
            "env",
            &password,
            "RUST_LOG=info",
            &control_bin,
            "serve",
            "--listen",
            CONTROL_HTTP,
            "--quic-listen",
            CONTROL_QUIC,
            "--heartbeat-interval",
            "1s",
            "--data-dir",
            &control_dir_s,
        ],
    );
    let api: SocketAddr = CONTROL_HTTP.parse().unwrap();
    let call = |method: &'static str, path: &str, token: Option<String>, body: Option<Value>| {
        let path = path.to_owned();
        netns::run_in(&ns, move || {
            http(method, api, &path, token.as_deref(), body.as_ref())
        })
    };
    let login = wait_until(Duration::from_secs(60), || {
        call(
            "POST",
            "/api/token/",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .filter(|(status, _)| *status == 200)
    })
    .unwrap_or_else(|| {
        panic!(
            "ims-control did not answer a login within 60 s:\n{}",
            lab.site.background_log(control)
        )
    });
    let token = serde_json::from_str::<Value>(&login.1).unwrap()["access"]
        .as_str()
        .unwrap()
        .to_owned();
    for (path, body) in [
        ("/api/sites", json!({"name": "lab"})),
        ("/api/cluster", json!({"name": "c-lab", "site": "lab"})),
        (
            "/api/boot-profiles",
            json!({"name": "p-lab", "site": "lab", "bios": "undionly.kpxe"}),
        ),
        (
            "/api/ippools",
            json!({"site": "lab", "cidr": "10.77.0.0/24", "gateway": SERVER_IP.to_string(),
                   "range_start": "10.77.0.100", "range_end": "10.77.0.200"}),
        ),
        (
            "/api/machines",
            json!({"cluster": "c-lab", "hostname": "node-1", "mac": MAC, "ip": "10.77.0.51",
                   "boot_profile": "p-lab"}),
        ),
    ] {
        let (status, text) = call("POST", path, Some(token.clone()), Some(body)).unwrap();
        assert_eq!(status, 201, "POST {path}: {text}");
    }

    // Enrol with a join token from the environment, as the DaemonSet's init container does.
    let join = join_token(&control_dir, "lab");
    let control_section = format!("[control]\nendpoint = \"{CONTROL_QUIC}\"\n");
    let enroll_config = lab.site.dir().join("enroll.toml");
    std::fs::write(
        &enroll_config,
        format!(
            "data_dir = \"{}\"\n{control_section}",
            lab.site.data_dir().display()
        ),
    )
    .unwrap();
    let join_env = format!("NETBOOTD_JOIN_TOKEN={join}");
    let enroll_config_s = enroll_config.display().to_string();
    let enrolled = lab.site.run_in(
        &ns,
        &[
            "env",
            &join_env,
            NETBOOTD,
            "enroll",
            "--config",
            &enroll_config_s,
            "--control",
            CONTROL_QUIC,
        ],
        Duration::from_secs(30),
    );
    assert!(enrolled.success(), "netbootd enroll: {enrolled:?}");

    let boot_file = lab.put_random("undionly.kpxe", 300_000);
    let body = format!(
        "[[interface]]\nname = \"srv0\"\naddress = \"{SERVER_IP}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/24\"\n\n{}\n\
         [http]\nlisten = \"{SERVER_IP}:8080\"\n\n{control_section}",
        lab.tftp_section("")
    );
    lab.start(&body);
    // The snapshot's subnet (the pool's range, 101 addresses; the file's has no range) is served.
    let subnet_served = wait_until(Duration::from_secs(30), || {
        let page = lab.site.metrics();
        (page.contains("netbootd_uplink_connected 1")
            && page.contains("netbootd_dhcp_pool_size{subnet=\"10.77.0.0/24\"} 101"))
        .then_some(())
    });
    assert!(
        subnet_served.is_some(),
        "netbootd did not connect and serve the snapshot's subnet within 30 s:\n{}\n{}",
        lab.site.daemon_log(),
        lab.site.background_log(control)
    );

    // A boot: DHCP, the boot file over TFTP, then over HTTP.
    lab.site.set_client_mac(MAC);
    let dhcp = lab.site.udhcpc("boot", 5);
    let bound = dhcp.expect_bound();
    assert_eq!(
        bound.get("ip").map(String::as_str),
        Some("10.77.0.51"),
        "{bound:?}\n{}",
        lab.site.daemon_log()
    );
    let got = lab.dl_path("undionly.kpxe");
    let tftp = lab.tftp_hpa_get("undionly.kpxe", &got, "octet");
    assert!(tftp.success(), "tftp: {tftp:?}");
    support::tftp::check_file(&got, &boot_file).unwrap();
    let http_boot: SocketAddr = (SERVER_IP, 8080).into();
    let fetched = netns::run_in(&ns, move || {
        http("GET", http_boot, "/undionly.kpxe", None, None)
    });
    assert_eq!(fetched.map(|(s, _)| s), Some(200), "HTTP boot GET");

    // Heartbeats carry the outbox depth; wait for one after the boot.
    let control_page = wait_until(Duration::from_secs(20), || {
        let (status, page) = call("GET", "/metrics", None, None)?;
        (status == 200
            && page.contains("ims_control_workers{status=\"active\"} 1")
            && page.contains("ims_control_worker_outbox_depth{"))
        .then_some(page)
    })
    .unwrap_or_else(|| {
        panic!(
            "ims-control never showed one active worker with an outbox depth:\n{}",
            lab.site.background_log(control)
        )
    });
    (lab.site.metrics(), control_page)
}
