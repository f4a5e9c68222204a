//! The ims-control configurations shipped in `deploy/kubernetes/*/ims-control-configmap.yaml`
//! load through the binary's own configuration loader (unknown keys and bad values are errors
//! there), with the settings the manifests around them rely on: HTTPS on the listen port the
//! Deployment's probes and Service use, the QUIC port, the data directory, and, for the
//! PostgreSQL variant, the database URL taken from `IMS_DATABASE_URL` (the Secret) over the
//! file. The ports and mounts themselves are cross-checked in `netboot/tests/deploy_kubernetes.rs`.
// A failed step panics with what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ims_control::config::{ConfigSources, RawConfig, StoreLocation};

fn configmap(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes")
        .join(dir)
        .join("ims-control-configmap.yaml")
}

/// The block scalar under `ims-control.toml: |` (the ConfigMap's only data key).
fn embedded_toml(yaml: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "ims-control.toml: |");
    assert!(lines.next().is_some(), "no `ims-control.toml: |` key");
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .expect("an empty ims-control.toml");
    body.iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn load(dir: &str, cli: RawConfig) -> ConfigSources {
    let yaml = std::fs::read_to_string(configmap(dir)).unwrap();
    let tmp = std::env::temp_dir().join(format!("deploy-config-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let path = tmp.join("ims-control.toml");
    std::fs::write(&path, embedded_toml(&yaml)).unwrap();
    let sources = ConfigSources::load(Some(&path), cli)
        .unwrap_or_else(|e| panic!("{dir}: ims-control refuses its ConfigMap: {e}"));
    let _ = std::fs::remove_dir_all(&tmp);
    sources
}

#[test]
fn the_configmaps_load_with_the_binarys_own_loader() {
    for dir in ["control-sqlite", "control-postgres"] {
        let serve = load(dir, RawConfig::default())
            .serve()
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(serve.listen.port(), 8443, "{dir}: listen");
        assert_eq!(serve.uplink.listen.port(), 7443, "{dir}: quic_listen");
        assert!(
            serve
                .uplink
                .names
                .contains(&"control.example.net".to_owned()),
            "{dir}: edges verify the name they connect to"
        );
        assert_eq!(serve.data_dir, Path::new("/var/lib/ims-control"), "{dir}");
        assert_eq!(
            serve.key_rotation,
            Some(std::time::Duration::from_secs(30 * 86_400)),
            "{dir}: key_rotation"
        );
        let tls = serve.tls.expect("HTTPS");
        assert_eq!(tls.cert, Path::new("/etc/ims-control/tls/tls.crt"), "{dir}");
        assert_eq!(tls.key, Path::new("/etc/ims-control/tls/tls.key"), "{dir}");
        // Without IMS_DATABASE_URL: SQLite in the data directory (the PVC in control-sqlite).
        assert_eq!(
            serve.store,
            StoreLocation::DataDir(PathBuf::from("/var/lib/ims-control")),
            "{dir}"
        );
    }
    // The PostgreSQL Deployment sets IMS_DATABASE_URL from its Secret: it wins over the file.
    let url = "postgres://ims:secret@postgres.example.net/ims";
    let cli = RawConfig {
        database: Some(url.to_owned()),
        ..RawConfig::default()
    };
    let serve = load("control-postgres", cli).serve().unwrap();
    assert_eq!(serve.store, StoreLocation::Url(url.to_owned()));
}

#[test]
fn the_embedded_toml_is_extracted() {
    let yaml = "data:\n  ims-control.toml: |\n    a = 1\n\n    b = \"x\"\nkind: ConfigMap\n";
    assert_eq!(embedded_toml(yaml), "a = 1\n\nb = \"x\"");
}
