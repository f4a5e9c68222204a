//! Shared by the deploy/ tests (`deploy_manifests.rs`, `deploy_kubernetes.rs`): what the real
//! binaries accept (their `--help`, and the environment variables their sources read), and the
//! configurations the manifests carry.
// Each test binary uses a different part; a failed step panics with what was wrong.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::http::ims_control;

pub(crate) const NETBOOTD: &str = env!("CARGO_BIN_EXE_netbootd");
/// Variables both daemons read through their logging set-up (documented in the README).
pub(crate) const LOGGING_ENV: &[&str] = &["RUST_LOG", "NO_COLOR"];

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn read(rel: &str) -> String {
    let path = workspace().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

// ---------------------------------------------------------------------------------------------
// What the binaries accept.

/// A binary's command line: per subcommand (`""` for the top level) its flags (with whether
/// they take a value) and every environment variable its help names.
pub(crate) struct Cli {
    pub(crate) name: &'static str,
    pub(crate) subcommands: BTreeMap<String, BTreeMap<String, bool>>,
    pub(crate) env: BTreeSet<String>,
}

pub(crate) fn run_help(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} --help failed",
        bin.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn parse_options(help: &str, env: &mut BTreeSet<String>) -> BTreeMap<String, bool> {
    let mut flags = BTreeMap::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            for (i, word) in t.split_whitespace().enumerate().take(3) {
                let word = word.trim_end_matches(',');
                if let Some(flag) = word.strip_prefix("--") {
                    let takes_value = t
                        .split_whitespace()
                        .nth(i + 1)
                        .is_some_and(|next| next.starts_with('<'));
                    flags.insert(flag.to_owned(), takes_value);
                }
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("[env: ") {
            let name: String = rest[at + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            env.insert(name);
            rest = &rest[at + 6..];
        }
    }
    flags
}

pub(crate) fn cli(name: &'static str, bin: &Path) -> Cli {
    let mut env = BTreeSet::new();
    let top = run_help(bin, &[]);
    let mut subcommands = BTreeMap::new();
    subcommands.insert(String::new(), parse_options(&top, &mut env));
    let mut in_commands = false;
    for line in top.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            let Some(sub) = line.split_whitespace().next() else {
                break;
            };
            if !line.starts_with("  ") {
                break;
            }
            if sub != "help" {
                let help = run_help(bin, &[sub]);
                subcommands.insert(sub.to_owned(), parse_options(&help, &mut env));
            }
        }
    }
    assert!(
        subcommands.len() > 2,
        "{name}: no subcommands found in --help"
    );
    Cli {
        name,
        subcommands,
        env,
    }
}

/// Environment variable names a crate's sources read as string literals.
pub(crate) fn source_env(crate_dir: &str) -> BTreeSet<String> {
    pub(crate) fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut text = String::new();
    walk(&workspace().join(crate_dir).join("src"), &mut text);
    // Every piece between two quotes (char literals such as '"' break a strict pairing).
    text.split('"')
        .filter(|s| {
            s.len() > 3
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

pub(crate) struct Binaries {
    pub(crate) netbootd: Cli,
    pub(crate) control: Cli,
    pub(crate) netbootd_env: BTreeSet<String>,
    pub(crate) control_env: BTreeSet<String>,
}

impl Binaries {
    pub(crate) fn load() -> Self {
        let netbootd = cli("netbootd", Path::new(NETBOOTD));
        let control = cli("ims-control", &ims_control());
        let mut netbootd_env = netbootd.env.clone();
        netbootd_env.extend(source_env("netboot"));
        let mut control_env = control.env.clone();
        control_env.extend(source_env("control"));
        for v in LOGGING_ENV {
            netbootd_env.insert((*v).to_owned());
            control_env.insert((*v).to_owned());
        }
        Self {
            netbootd,
            control,
            netbootd_env,
            control_env,
        }
    }

    pub(crate) fn by_program(&self, program: &str) -> Option<(&Cli, &BTreeSet<String>)> {
        match Path::new(program).file_name()?.to_str()? {
            "netbootd" => Some((&self.netbootd, &self.netbootd_env)),
            "ims-control" => Some((&self.control, &self.control_env)),
            _ => None,
        }
    }

    /// Checks `argv` (program first) and returns its flags with their values.
    pub(crate) fn check(&self, argv: &[String], context: &str) -> BTreeMap<String, String> {
        let (cli, _) = self
            .by_program(&argv[0])
            .unwrap_or_else(|| panic!("{context}: {} is not one of our binaries", argv[0]));
        let mut sub = "";
        let mut given = BTreeMap::new();
        let mut i = 1;
        while i < argv.len() {
            let arg = &argv[i];
            if let Some(flag) = arg.strip_prefix("--") {
                let (flag, inline) = match flag.split_once('=') {
                    Some((f, v)) => (f, Some(v.to_owned())),
                    None => (flag, None),
                };
                let known = &cli.subcommands[sub];
                let takes_value = *known.get(flag).unwrap_or_else(|| {
                    panic!(
                        "{context}: `{} {sub}` has no flag --{flag} (it accepts: {})",
                        cli.name,
                        known.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                });
                let value = if takes_value && inline.is_none() {
                    i += 1;
                    argv.get(i)
                        .unwrap_or_else(|| panic!("{context}: --{flag} needs a value"))
                        .clone()
                } else {
                    inline.unwrap_or_default()
                };
                given.insert(flag.to_owned(), value);
            } else if sub.is_empty() && cli.subcommands.contains_key(arg.as_str()) {
                sub = cli.subcommands.get_key_value(arg.as_str()).unwrap().0;
                given.insert("<subcommand>".to_owned(), arg.clone());
            } else {
                panic!(
                    "{context}: `{}` does not take the argument {arg:?}",
                    cli.name
                );
            }
            i += 1;
        }
        given
    }

    pub(crate) fn check_env(&self, program: &str, name: &str, context: &str) {
        let (cli, env) = self.by_program(program).unwrap();
        assert!(
            env.contains(name),
            "{context}: {} reads no environment variable {name}",
            cli.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The configurations the manifests carry.

/// The edge ConfigMap's netbootd.toml.
pub(crate) fn edge_netbootd_toml() -> String {
    let docs = yaml_docs("deploy/kubernetes/edge/netbootd-configmap.yaml");
    docs[0]["data"]["netbootd.toml"]
        .as_str()
        .expect("data.netbootd.toml")
        .to_owned()
}

pub(crate) fn toml_table(text: &str) -> toml::Table {
    text.parse().expect("TOML")
}

pub(crate) fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `PORT/proto` for everything a configuration listens on.
pub(crate) fn netbootd_ports(config: &toml::Table) -> BTreeSet<String> {
    let mut ports = BTreeSet::from(["67/udp".to_owned()]);
    let addr = |section: &str, key: &str| -> Option<String> {
        match section {
            "" => config.get(key)?.as_str().map(str::to_owned),
            s => config.get(s)?.get(key)?.as_str().map(str::to_owned),
        }
    };
    ports.insert(format!("{}/udp", port_of(&addr("tftp", "listen").unwrap())));
    ports.insert(format!("{}/tcp", port_of(&addr("http", "listen").unwrap())));
    ports.insert(format!(
        "{}/tcp",
        port_of(&addr("", "metrics_listen").unwrap())
    ));
    ports
}

pub(crate) fn control_configmap_toml(dir: &str) -> toml::Table {
    let docs = yaml_docs(&format!(
        "deploy/kubernetes/{dir}/ims-control-configmap.yaml"
    ));
    toml_table(docs[0]["data"]["ims-control.toml"].as_str().unwrap())
}

pub(crate) fn control_ports(config: &toml::Table) -> BTreeSet<String> {
    BTreeSet::from([
        format!("{}/tcp", port_of(config["listen"].as_str().unwrap())),
        format!("{}/udp", port_of(config["quic_listen"].as_str().unwrap())),
    ])
}

pub(crate) fn strs(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every query of the dashboard: panel targets' `expr` and query variables' `query`.
pub(crate) fn dashboard_queries(text: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dash: serde_json::Value = serde_json::from_str(text).expect("dashboard is JSON");
    let mut out = Vec::new();
    walk(&dash, &mut out);
    out
}
