//! The Kubernetes manifests under `deploy/kubernetes` against the real binaries and the
//! configurations they carry: flags, subcommands and environment variables are ones `netbootd`
//! and `ims-control` accept; ports agree across the configurations, containers, probes,
//! Services and scrape annotations; data directories, configuration files, TLS files and boot
//! roots are mounted where the configurations expect them; the Secrets, ConfigMaps and claims
//! referenced exist; capabilities are dropped but for netbootd's two; kustomizations list every
//! manifest; netbootd's probes use `/healthz` (liveness) and `/readyz` (readiness), paths the
//! real daemon serves. `ims-control` is looked up next to this test binary.
// A test reads files and runs the binaries; a failed step panics with what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deploy;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use deploy::*;
use yaml_rust2::{Yaml, YamlLoader};

// ---------------------------------------------------------------------------------------------
// Kubernetes.

struct Doc {
    dir: String,
    file: String,
    yaml: Yaml,
}

fn kubernetes_docs() -> Vec<Doc> {
    let base = workspace().join("deploy/kubernetes");
    let mut out = Vec::new();
    let mut dirs = vec![base.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let rel_dir = dir.strip_prefix(&base).unwrap().display().to_string();
                let file = path.file_name().unwrap().to_str().unwrap().to_owned();
                for yaml in YamlLoader::load_from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                {
                    assert!(
                        yaml["kind"].as_str().is_some(),
                        "{}: a document without kind",
                        path.display()
                    );
                    out.push(Doc {
                        dir: rel_dir.clone(),
                        file: file.clone(),
                        yaml,
                    });
                }
            }
        }
    }
    out
}

/// The invocations of our binaries in a container: `command`/`args`, or a `sh -c` script's
/// lines that run one.
fn invocations(container: &Yaml, image_binary: &str) -> Vec<Vec<String>> {
    let command = strs(&container["command"]);
    let args = strs(&container["args"]);
    if command.is_empty() {
        let mut argv = vec![image_binary.to_owned()];
        argv.extend(args);
        return vec![argv];
    }
    if command[0].ends_with("/sh") && command.get(1).map(String::as_str) == Some("-c") {
        let script = command.get(2).cloned().unwrap_or_default();
        return script
            .lines()
            .filter_map(|line| {
                let tokens: Vec<&str> = line.split_whitespace().collect();
                let at = tokens.iter().position(|t| {
                    matches!(
                        Path::new(t).file_name().and_then(|f| f.to_str()),
                        Some("netbootd" | "ims-control")
                    ) && t.starts_with('/')
                })?;
                Some(
                    tokens[at..]
                        .iter()
                        .take_while(|t| !matches!(**t, ";" | "&&" | "||" | "|"))
                        .map(|t| (*t).to_owned())
                        .collect(),
                )
            })
            .collect();
    }
    let mut argv = command;
    argv.extend(args);
    vec![argv]
}

fn port_number(container: &Yaml, port: &Yaml) -> u16 {
    if let Some(n) = port.as_i64() {
        return u16::try_from(n).unwrap();
    }
    let name = port.as_str().unwrap();
    container["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .map(|n| u16::try_from(n).unwrap())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// `PORT/proto` of a container's declared ports.
fn container_ports(container: &Yaml) -> BTreeSet<String> {
    container["ports"]
        .as_vec()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p["containerPort"].as_i64().unwrap(),
                        p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The mount (and its volume) holding `path`.
fn mount_for<'a>(
    container: &'a Yaml,
    volumes: &'a BTreeMap<String, Yaml>,
    path: &str,
) -> Option<(&'a Yaml, &'a Yaml)> {
    container["volumeMounts"].as_vec()?.iter().find_map(|m| {
        let mount = m["mountPath"].as_str()?;
        let inside = path == mount || path.starts_with(&format!("{mount}/"));
        inside.then(|| (m, &volumes[m["name"].as_str().unwrap()]))
    })
}

#[test]
fn kubernetes_manifests_match_the_binaries_and_their_configurations() {
    let bins = Binaries::load();
    let docs = kubernetes_docs();
    let in_dir = |dir: &str, kind: &str| -> Vec<&Doc> {
        docs.iter()
            .filter(|d| d.dir == dir && d.yaml["kind"].as_str() == Some(kind))
            .collect()
    };
    // Kustomizations list every manifest of their directory (not the *.example.yaml Secrets).
    for k in docs.iter().filter(|d| d.file == "kustomization.yaml") {
        let listed: BTreeSet<String> = strs(&k.yaml["resources"]).into_iter().collect();
        let present: BTreeSet<String> = docs
            .iter()
            .filter(|d| {
                d.dir == k.dir
                    && d.file != "kustomization.yaml"
                    && !d.file.ends_with(".example.yaml")
            })
            .map(|d| d.file.clone())
            .collect();
        assert_eq!(listed, present, "{}/kustomization.yaml resources", k.dir);
    }

    let mut workloads = 0;
    for w in docs
        .iter()
        .filter(|d| matches!(d.yaml["kind"].as_str(), Some("DaemonSet" | "Deployment")))
    {
        workloads += 1;
        let ctx = format!("{}/{}", w.dir, w.file);
        let pod = &w.yaml["spec"]["template"]["spec"];
        let labels = &w.yaml["spec"]["template"]["metadata"]["labels"];
        let volumes: BTreeMap<String, Yaml> = pod["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v.clone()))
            .collect();
        // Every ConfigMap, Secret and claim a volume names exists next to the workload.
        for (name, v) in &volumes {
            for (key, kind, field) in [
                ("configMap", "ConfigMap", "name"),
                ("secret", "Secret", "secretName"),
                (
                    "persistentVolumeClaim",
                    "PersistentVolumeClaim",
                    "claimName",
                ),
            ] {
                if let Some(wanted) = v[key][field].as_str() {
                    assert!(
                        in_dir(&w.dir, kind)
                            .iter()
                            .any(|d| d.yaml["metadata"]["name"].as_str() == Some(wanted)),
                        "{ctx}: volume {name} needs the {kind} {wanted}"
                    );
                }
            }
        }
        let containers: Vec<&Yaml> = pod["initContainers"]
            .as_vec()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_vec().unwrap())
            .collect();
        let main = pod["containers"].as_vec().unwrap()[0].clone();
        let image = main["image"].as_str().unwrap();
        let binary = if image.contains("netbootd") {
            "netbootd"
        } else {
            "ims-control"
        };
        let mut main_flags = BTreeMap::new();
        let mut enroll_control = None;
        for c in &containers {
            let cname = c["name"].as_str().unwrap();
            let cctx = format!("{ctx} container {cname}");
            // Shell steps at least parse (`sh -n`).
            let command = strs(&c["command"]);
            if command.first().is_some_and(|p| p.ends_with("/sh")) {
                let out = std::process::Command::new("/bin/sh")
                    .args(["-n", "-c", command.get(2).map_or("", String::as_str)])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{cctx}: the shell script does not parse: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            for argv in invocations(c, &format!("/usr/local/bin/{binary}")) {
                let flags = bins.check(&argv, &cctx);
                if flags.get("<subcommand>").map(String::as_str) == Some("enroll") {
                    enroll_control = flags.get("control").cloned();
                    bins.check_env(binary, "NETBOOTD_JOIN_TOKEN", &cctx);
                }
                if *c == &main {
                    main_flags = flags;
                }
            }
            for e in c["env"].as_vec().into_iter().flatten() {
                let name = e["name"].as_str().unwrap();
                if name != "NODE_NAME" {
                    bins.check_env(binary, name, &cctx);
                }
                let secret = &e["valueFrom"]["secretKeyRef"];
                if let Some(secret_name) = secret["name"].as_str() {
                    let key = secret["key"].as_str().unwrap();
                    let found = in_dir(&w.dir, "Secret").into_iter().any(|d| {
                        d.yaml["metadata"]["name"].as_str() == Some(secret_name)
                            && !d.yaml["stringData"][key].is_badvalue()
                    });
                    assert!(
                        found,
                        "{cctx}: env {name} needs Secret {secret_name} key {key}"
                    );
                }
            }
            // Least privilege: everything dropped; only netbootd adds its two capabilities.
            let caps = &c["securityContext"]["capabilities"];
            assert_eq!(strs(&caps["drop"]), ["ALL"], "{cctx}: drop ALL");
            if *c == &main {
                let added: BTreeSet<String> = strs(&caps["add"]).into_iter().collect();
                let want: BTreeSet<String> = if binary == "netbootd" {
                    ["NET_RAW", "NET_BIND_SERVICE"].map(str::to_owned).into()
                } else {
                    BTreeSet::new()
                };
                assert_eq!(added, want, "{cctx}: capabilities added");
                let non_root = c["securityContext"]["runAsNonRoot"]
                    .as_bool()
                    .or(pod["securityContext"]["runAsNonRoot"].as_bool());
                assert_eq!(non_root, Some(true), "{cctx}: runAsNonRoot");
            }
        }

        // The configuration file the main container reads, from its ConfigMap mount.
        let config_path = main_flags
            .get("config")
            .unwrap_or_else(|| panic!("{ctx}: the main container passes no --config"))
            .clone();
        let (mount, volume) = mount_for(&main, &volumes, &config_path)
            .unwrap_or_else(|| panic!("{ctx}: nothing is mounted at {config_path}"));
        let key = mount["subPath"].as_str().map_or_else(
            || {
                Path::new(&config_path)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            },
            str::to_owned,
        );
        let cm_name = volume["configMap"]["name"].as_str().unwrap();
        let cm = in_dir(&w.dir, "ConfigMap")
            .into_iter()
            .find(|d| d.yaml["metadata"]["name"].as_str() == Some(cm_name))
            .unwrap();
        let config = toml_table(
            cm.yaml["data"][key.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: ConfigMap {cm_name} has no key {key}")),
        );
        let data_dir = config["data_dir"].as_str().unwrap();
        let (state_mount, _) = mount_for(&main, &volumes, data_dir)
            .unwrap_or_else(|| panic!("{ctx}: data_dir {data_dir} is not mounted"));
        assert_ne!(
            state_mount["readOnly"].as_bool(),
            Some(true),
            "{ctx}: {data_dir} writable"
        );
        let probes: Vec<u16> = ["startupProbe", "livenessProbe", "readinessProbe"]
            .iter()
            .filter_map(|p| {
                let port = &main[*p]["httpGet"]["port"];
                (!port.is_badvalue()).then(|| port_number(&main, port))
            })
            .collect();
        assert!(!probes.is_empty(), "{ctx}: no HTTP probes");

        let service_port = if binary == "netbootd" {
            assert_eq!(
                pod["hostNetwork"].as_bool(),
                Some(true),
                "{ctx}: hostNetwork"
            );
            assert_eq!(
                container_ports(&main),
                netbootd_ports(&config),
                "{ctx}: ports"
            );
            let metrics = port_of(config["metrics_listen"].as_str().unwrap());
            assert!(
                probes.iter().all(|p| *p == metrics),
                "{ctx}: probes on {metrics}"
            );
            let annotated =
                w.yaml["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
                    .as_str()
                    .map(|p| p.parse::<u16>().unwrap());
            assert_eq!(annotated, Some(metrics), "{ctx}: prometheus.io/port");
            let root = config["tftp"]["root"].as_str().unwrap();
            assert!(
                mount_for(&main, &volumes, root).is_some(),
                "{ctx}: {root} not mounted"
            );
            let endpoint = config["control"]["endpoint"].as_str().unwrap();
            assert_eq!(
                enroll_control.as_deref(),
                Some(endpoint),
                "{ctx}: the init container enrols with the [control] endpoint"
            );
            None
        } else {
            assert_eq!(
                container_ports(&main),
                control_ports(&config),
                "{ctx}: ports"
            );
            let listen = port_of(config["listen"].as_str().unwrap());
            assert!(
                probes.iter().all(|p| *p == listen),
                "{ctx}: probes on {listen}"
            );
            for key in ["tls_cert", "tls_key"] {
                let file = config[key].as_str().unwrap();
                let (_, v) = mount_for(&main, &volumes, file)
                    .unwrap_or_else(|| panic!("{ctx}: {key} {file} is not mounted"));
                let secret = v["secret"]["secretName"].as_str().unwrap();
                let name = Path::new(file).file_name().unwrap().to_str().unwrap();
                assert!(
                    in_dir(&w.dir, "Secret").iter().any(|d| {
                        d.yaml["metadata"]["name"].as_str() == Some(secret)
                            && !d.yaml["stringData"][name].is_badvalue()
                    }),
                    "{ctx}: {key} {file}: Secret {secret} has no key {name}"
                );
            }
            // Several replicas need the shared database; one replica keeps SQLite on a claim.
            let replicas = w.yaml["spec"]["replicas"].as_i64().unwrap();
            let env: Vec<String> = main["env"]
                .as_vec()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect();
            let claim = volumes
                .values()
                .any(|v| !v["persistentVolumeClaim"].is_badvalue());
            if replicas > 1 {
                assert!(
                    env.iter().any(|e| e == "IMS_DATABASE_URL"),
                    "{ctx}: PostgreSQL"
                );
                assert!(!claim, "{ctx}: replicas on a ReadWriteOnce claim");
            } else {
                assert!(claim, "{ctx}: SQLite needs a PersistentVolumeClaim");
            }
            Some(listen)
        };

        // Services in front of it route to its declared ports.
        for s in in_dir(&w.dir, "Service") {
            let selector = s.yaml["spec"]["selector"].as_hash().unwrap();
            if !selector
                .iter()
                .all(|(k, v)| labels[k.as_str().unwrap()] == *v)
            {
                continue;
            }
            let declared = container_ports(&main);
            for p in s.yaml["spec"]["ports"].as_vec().unwrap() {
                let target = port_number(&main, &p["targetPort"]);
                let proto = p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
                assert!(
                    declared.contains(&format!("{target}/{proto}")),
                    "{ctx}: Service port {target}/{proto} is not a container port"
                );
                assert_eq!(
                    p["port"].as_i64(),
                    Some(i64::from(target)),
                    "{ctx}: same port"
                );
            }
            let annotated = s.yaml["metadata"]["annotations"]["prometheus.io/port"]
                .as_str()
                .map(|p| p.parse::<u16>().unwrap());
            assert_eq!(annotated, service_port, "{ctx}: Service prometheus.io/port");
        }
    }
    assert_eq!(
        workloads, 3,
        "the edge DaemonSet and two ims-control Deployments"
    );
}

/// The netbootd DaemonSet's probes: liveness on `/healthz`, readiness on `/readyz`, and every
/// probe path is one the real daemon serves (200 once its services are up; an unknown path is
/// 404, so the check means something). The daemon runs on loopback with TFTP and HTTP (no DHCP:
/// no raw sockets, no root needed).
#[test]
fn netbootd_probe_paths_are_served_by_the_daemon() {
    use std::process::Command;
    use std::time::Duration;

    use support::control::{Proc, free_port};
    use support::http::http;

    let docs = kubernetes_docs();
    let daemonset = docs
        .iter()
        .find(|d| d.dir == "edge" && d.yaml["kind"].as_str() == Some("DaemonSet"))
        .expect("deploy/kubernetes/edge has a DaemonSet");
    let main = &daemonset.yaml["spec"]["template"]["spec"]["containers"][0];
    let path_of = |probe: &str| main[probe]["httpGet"]["path"].as_str().map(str::to_owned);
    assert_eq!(path_of("livenessProbe").as_deref(), Some("/healthz"));
    assert_eq!(path_of("readinessProbe").as_deref(), Some("/readyz"));
    let paths: Vec<String> = ["startupProbe", "livenessProbe", "readinessProbe"]
        .iter()
        .filter_map(|p| path_of(p))
        .collect();

    let dir = support::TempDir::new("deploy-probe-paths");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let tftp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (metrics_port, http_port) = (free_port(), free_port());
    let config = dir.path().join("netbootd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
             [tftp]\nroot = \"{root}\"\nlisten = \"127.0.0.1:{tftp_port}\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\nroot = \"{root}\"\n",
            data = dir.path().join("data").display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(support::site::NETBOOTD);
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let mut daemon = Proc::spawn(cmd);
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let ready = support::wait_until(Duration::from_secs(20), || {
        http("GET", metrics, "/readyz", None, None).filter(|(status, _)| *status == 200)
    });
    assert_eq!(
        ready.as_ref().map(|(_, body)| body.as_str()),
        Some("ready\n"),
        "netbootd's /readyz did not answer 200 within 20 s:\n{}",
        daemon.log()
    );
    for path in &paths {
        let got = http("GET", metrics, path, None, None);
        assert_eq!(
            got.as_ref().map(|(status, _)| *status),
            Some(200),
            "probe path {path}: {got:?}\n{}",
            daemon.log()
        );
    }
    let unknown = http("GET", metrics, "/nope", None, None);
    assert_eq!(unknown.map(|(status, _)| status), Some(404));
    daemon.stop();
}
