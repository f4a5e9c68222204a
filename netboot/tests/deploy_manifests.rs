//! The files under `deploy/` against the real binaries (the Kubernetes manifests are in
//! `deploy_kubernetes.rs`): every flag, subcommand and environment variable a systemd unit or
//! Containerfile passes to `netbootd` or `ims-control` is one their `--help` lists (or, for
//! variables read outside the command line, one their sources read); the edge ConfigMap's
//! netbootd configuration passes `netbootd check-config`; `EXPOSE` and the Prometheus scrape
//! configuration use the configured ports; the alert rules are complete. `systemd-analyze
//! verify` (and its offline security score) checks the units when systemd is installed (CI
//! installs it); `promtool check rules` runs when promtool is installed (required with
//! `PROMTOOL_REQUIRED=1`, which `.ci/run` sets after installing it).
//!
//! The ims-control configuration inside the ConfigMaps is loaded by the binary's own loader in
//! `control/tests/deploy_config.rs`. `ims-control` is looked up next to this test binary.
// A test reads files and runs the binaries; a failed step panics with what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deploy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use deploy::*;
use support::http::ims_control;

#[test]
fn the_edge_configmap_passes_netbootd_check_config() {
    // Paths of the node are replaced by temporary directories; everything else is as shipped.
    let dir = std::env::temp_dir().join(format!("deploy-manifests-{}", std::process::id()));
    let root = dir.join("srv");
    std::fs::create_dir_all(&root).unwrap();
    let shipped = edge_netbootd_toml();
    let table = toml_table(&shipped);
    let mut text = shipped.clone();
    for (key, value, local) in [
        (
            "data_dir",
            table["data_dir"].as_str().unwrap(),
            dir.join("state"),
        ),
        (
            "root",
            table["tftp"]["root"].as_str().unwrap(),
            root.clone(),
        ),
    ] {
        let line = format!("{key} = \"{value}\"");
        assert!(text.contains(&line), "{line} not found");
        text = text.replace(&line, &format!("{key} = \"{}\"", local.display()));
    }
    let path = dir.join("netbootd.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(NETBOOTD)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": OK"),
        "netbootd check-config refused the edge ConfigMap:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It is a managed edge whose metrics can be scraped from other hosts.
    assert!(
        stdout.contains("control: control.example.net:7443"),
        "{stdout}"
    );
    assert!(
        stdout.contains("metrics: http://0.0.0.0:9464/metrics"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd.

type Ini = Vec<(String, String, String)>;

fn parse_unit(text: &str) -> Ini {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

fn values<'a>(ini: &'a Ini, key: &str) -> Vec<&'a str> {
    ini.iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn one<'a>(ini: &'a Ini, key: &str, unit: &str) -> &'a str {
    let v = values(ini, key);
    assert_eq!(v.len(), 1, "{unit}: expected one {key}=, found {v:?}");
    v[0]
}

fn words(s: &str) -> BTreeSet<&str> {
    s.split_whitespace().collect()
}

#[test]
fn systemd_units_use_real_flags_paths_and_the_sandbox() {
    let bins = Binaries::load();
    for (unit, binary, example) in [
        (
            "netbootd.service",
            "netbootd",
            "deploy/examples/netbootd.toml",
        ),
        (
            "ims-control.service",
            "ims-control",
            "deploy/examples/ims-control.toml",
        ),
    ] {
        let ini = parse_unit(&read(&format!("deploy/systemd/{unit}")));
        let mut config_path = None;
        for key in ["ExecStartPre", "ExecStart"] {
            for line in values(&ini, key) {
                let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                assert_eq!(argv[0], format!("/usr/local/bin/{binary}"), "{unit} {key}");
                let flags = bins.check(&argv, &format!("{unit} {key}"));
                if key == "ExecStart" {
                    config_path = flags.get("config").cloned();
                }
            }
        }
        for env in values(&ini, "Environment") {
            let (name, value) = env.split_once('=').unwrap();
            bins.check_env(binary, name, unit);
            if name.ends_with("_CONFIG") {
                assert_eq!(Some(value), config_path.as_deref(), "{unit}: {name}");
            }
        }
        // The configuration lives in the ConfigurationDirectory, the store in the
        // StateDirectory, which is the data_dir of the example the unit says to install.
        let config_path =
            config_path.unwrap_or_else(|| panic!("{unit}: ExecStart has no --config"));
        let conf_dir = one(&ini, "ConfigurationDirectory", unit);
        assert_eq!(
            Path::new(&config_path).parent(),
            Some(Path::new("/etc").join(conf_dir).as_path()),
            "{unit}"
        );
        let state = format!("/var/lib/{}", one(&ini, "StateDirectory", unit));
        let example = toml_table(&read(example));
        assert_eq!(
            example.get("data_dir").and_then(toml::Value::as_str),
            Some(state.as_str()),
            "{unit}: StateDirectory is not the data_dir of {unit}'s example configuration"
        );
        assert_eq!(one(&ini, "User", unit), binary, "{unit}: its own user");
        assert!(
            workspace()
                .join(format!("deploy/systemd/{binary}.sysusers.conf"))
                .is_file(),
            "{unit}: sysusers snippet for the user"
        );
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
        ] {
            assert_eq!(one(&ini, key, unit), want, "{unit}: {key}");
        }
        assert!(
            values(&ini, "SystemCallFilter")
                .iter()
                .any(|v| words(v).contains("@system-service")),
            "{unit}: SystemCallFilter=@system-service"
        );
    }

    let ini = parse_unit(&read("deploy/systemd/netbootd.service"));
    let two = BTreeSet::from(["CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]);
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        assert_eq!(
            words(one(&ini, key, "netbootd")),
            two,
            "netbootd.service: {key}"
        );
    }
    assert_eq!(
        words(one(&ini, "RestrictAddressFamilies", "netbootd")),
        BTreeSet::from(["AF_PACKET", "AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"])
    );
    let syscalls: BTreeSet<&str> = values(&ini, "SystemCallFilter")
        .into_iter()
        .filter(|v| !v.starts_with('~'))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(syscalls.contains("io_uring_setup"), "io_uring allowed");
    let ini = parse_unit(&read("deploy/systemd/ims-control.service"));
    assert_eq!(one(&ini, "CapabilityBoundingSet", "ims-control"), "");
}

#[test]
fn systemd_analyze_verifies_the_units() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        // .ci/run installs systemd; elsewhere the unit checks above still run.
        eprintln!("systemd-analyze not installed: `systemd-analyze verify` skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("deploy-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (unit, bin) in [
        ("netbootd.service", PathBuf::from(NETBOOTD)),
        ("ims-control.service", ims_control()),
    ] {
        // The built binary stands in for /usr/local/bin/<name>, which verify checks exists.
        let name = bin.file_name().unwrap().to_str().unwrap().to_owned();
        let text = read(&format!("deploy/systemd/{unit}")).replace(
            &format!("/usr/local/bin/{name}"),
            &bin.display().to_string(),
        );
        let path = dir.join(unit);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(unit)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {unit}:\n{stderr}"
        );
        // Exposure score (0 = locked down, 10 = unprotected) at most 2.5.
        let out = Command::new(analyze)
            .args(["security", "--offline=yes", "--threshold=25"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-analyze security {unit}: exposure above 2.5\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Containerfiles.

/// Instructions (keyword, rest) with continuation lines joined and comments dropped.
fn containerfile(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (kw, rest) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

fn json_array(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not a JSON array: {s}: {e}"))
}

/// The workspace's binaries, from the crates' manifests.
fn workspace_binaries() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for krate in ["netboot", "control", "proto", "bench"] {
        let manifest = toml_table(&read(&format!("{krate}/Cargo.toml")));
        let package = manifest["package"]["name"].as_str().unwrap().to_owned();
        if let Some(bins) = manifest.get("bin").and_then(toml::Value::as_array) {
            for b in bins {
                out.insert(b["name"].as_str().unwrap().to_owned(), package.clone());
            }
        } else if workspace().join(krate).join("src/main.rs").is_file() {
            out.insert(package.clone(), package);
        }
    }
    out
}

#[test]
fn containerfiles_build_our_binaries_as_non_root_with_the_configured_ports() {
    let bins = Binaries::load();
    let workspace_bins = workspace_binaries();
    let edge = toml_table(&edge_netbootd_toml());
    let control = control_configmap_toml("control-sqlite");
    for (file, binary, expected_ports) in [
        ("Containerfile.netbootd", "netbootd", netbootd_ports(&edge)),
        (
            "Containerfile.ims-control",
            "ims-control",
            control_ports(&control),
        ),
    ] {
        let ins = containerfile(&read(&format!("deploy/container/{file}")));
        let get = |kw: &str| -> Vec<&str> {
            ins.iter()
                .filter(|(k, _)| k == kw)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        // Multi-stage: a Rust builder, then a slim Debian runtime.
        let froms = get("FROM");
        assert!(froms.len() >= 2, "{file}: multi-stage");
        let args = get("ARG").join(" ");
        assert!(
            args.contains("rust:") && args.contains("debian:bookworm-slim"),
            "{file}"
        );
        let user = *get("USER")
            .last()
            .unwrap_or_else(|| panic!("{file}: no USER"));
        let uid = user.split(':').next().unwrap();
        assert!(uid != "0" && uid != "root", "{file}: runs as root");
        assert!(
            get("RUN")
                .iter()
                .any(|r| r.contains(&format!("--uid {uid}"))),
            "{file}: USER {uid} is not created"
        );
        // ENTRYPOINT runs the binary the build stage built.
        let entrypoint = json_array(get("ENTRYPOINT").last().unwrap());
        let program = Path::new(&entrypoint[0])
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(program, binary, "{file}");
        let package = workspace_bins
            .get(program)
            .unwrap_or_else(|| panic!("{file}: {program} is not a binary of the workspace"));
        assert!(
            get("RUN")
                .iter()
                .any(|r| r.contains(&format!("-p {package} --bin {program}"))),
            "{file}: no `cargo build -p {package} --bin {program}`"
        );
        assert!(
            get("COPY")
                .iter()
                .any(|c| c.starts_with("--from=") && c.ends_with(&entrypoint[0])),
            "{file}: the ENTRYPOINT {} is not copied from the build stage",
            entrypoint[0]
        );
        let mut argv = entrypoint.clone();
        argv.extend(json_array(get("CMD").last().unwrap()));
        bins.check(&argv, file);
        for env in get("ENV") {
            for pair in env.split_whitespace() {
                let name = pair.split('=').next().unwrap();
                bins.check_env(binary, name, file);
            }
        }
        let exposed: BTreeSet<String> = get("EXPOSE")
            .iter()
            .flat_map(|e| e.split_whitespace())
            .map(str::to_owned)
            .collect();
        assert_eq!(
            exposed, expected_ports,
            "{file}: EXPOSE vs the configuration"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

#[test]
fn prometheus_scrapes_the_configured_ports_and_the_rules_are_complete() {
    let scrape = &yaml_docs("deploy/prometheus/prometheus.yml")[0];
    for f in strs(&scrape["rule_files"]) {
        assert!(
            workspace().join("deploy/prometheus").join(&f).is_file(),
            "rule file {f}"
        );
    }
    let netbootd_port = port_of(
        toml_table(&edge_netbootd_toml())["metrics_listen"]
            .as_str()
            .unwrap(),
    );
    let control_port = port_of(
        control_configmap_toml("control-sqlite")["listen"]
            .as_str()
            .unwrap(),
    );
    let mut jobs: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for job in scrape["scrape_configs"].as_vec().unwrap() {
        let mut name = job["job_name"].as_str().unwrap().to_owned();
        let mut addresses: Vec<String> = Vec::new();
        for sc in job["static_configs"].as_vec().into_iter().flatten() {
            addresses.extend(strs(&sc["targets"]));
        }
        for r in job["relabel_configs"].as_vec().into_iter().flatten() {
            match r["target_label"].as_str() {
                Some("job") => name = r["replacement"].as_str().unwrap().to_owned(),
                Some("__address__") => {
                    addresses.push(r["replacement"].as_str().unwrap().to_owned())
                }
                _ => {}
            }
        }
        let ports = jobs.entry(name).or_default();
        for a in addresses {
            ports.insert(port_of(&a));
        }
        // Kubernetes endpoints jobs take the Service's port named https.
        if !job["kubernetes_sd_configs"].is_badvalue()
            && job["kubernetes_sd_configs"][0]["role"].as_str() == Some("endpoints")
        {
            ports.insert(control_port);
        }
    }
    assert_eq!(
        jobs["netbootd"],
        BTreeSet::from([netbootd_port]),
        "netbootd scrape port"
    );
    assert_eq!(
        jobs["ims-control"],
        BTreeSet::from([control_port]),
        "ims-control scrape port"
    );

    let rules = &yaml_docs("deploy/prometheus/alerts.yml")[0];
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let alert = rule["alert"].as_str().expect("alert name");
            assert!(names.insert(alert.to_owned()), "duplicate alert {alert}");
            let expr = rule["expr"].as_str().unwrap();
            assert!(!rule["for"].is_badvalue(), "{alert}: no `for:`");
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("critical" | "warning" | "info")),
                "{alert}: severity {severity:?}"
            );
            for a in ["summary", "description"] {
                let text = rule["annotations"][a].as_str().unwrap_or_default();
                assert!(text.len() > 20, "{alert}: {a} too short: {text:?}");
            }
            // `job` matchers name jobs the scrape configuration has.
            for part in expr.split("job=\"").skip(1) {
                let job = part.split('"').next().unwrap();
                assert!(jobs.contains_key(job), "{alert}: no scrape job {job}");
            }
        }
    }
    for wanted in [
        "NetbootdDown",
        "DhcpPoolNearlyFull",
        "TftpFailureRateHigh",
        "UplinkOutboxGrowing",
        "EdgeCertificateExpiring",
        "UplinkCaCertificateExpiring",
        "UplinkServerCertificateExpiring",
        "ImsControlHttpsCertificateExpiring",
        "ImsAlarmCriticalOpen",
        "ImsAlarmMajorOpen",
    ] {
        assert!(names.contains(wanted), "alert {wanted} missing");
    }
    // The dashboard's queries, as recording rules (Grafana's variables replaced), so promtool
    // parses them too.
    let dashboard = read("deploy/grafana/ims-dashboard.json");
    let mut recorded = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries(&dashboard).iter().enumerate() {
        if q.starts_with("label_values(") {
            continue;
        }
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        recorded.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::Value::String(q)
        ));
    }
    let recorded_path =
        std::env::temp_dir().join(format!("ims-dashboard-rules-{}.yml", std::process::id()));
    std::fs::write(&recorded_path, recorded).unwrap();
    let recorded_arg = recorded_path.display().to_string();
    // promtool, when installed, checks the rules' PromQL and runs their unit tests
    // (alerts_test.yml: each alert fires, or stays quiet, on given series).
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "rules", recorded_arg.as_str()],
    ] {
        let Ok(out) = Command::new("promtool")
            .args(args)
            .current_dir(workspace().join("deploy/prometheus"))
            .output()
        else {
            // CI installs promtool and sets PROMTOOL_REQUIRED=1: there a missing one fails.
            assert!(
                std::env::var_os("PROMTOOL_REQUIRED").is_none_or(|v| v != "1"),
                "PROMTOOL_REQUIRED=1 but promtool is not installed: apt-get install prometheus"
            );
            eprintln!(
                "promtool not installed: `promtool {}` skipped",
                args.join(" ")
            );
            continue;
        };
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_file(&recorded_path);
}
