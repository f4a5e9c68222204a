//! Tests of `[tftp]`, `[http]`, the boot profile script keys and the filesystem check.

use std::path::Path;
use std::time::Duration;

use super::tests::{assert_invalid, assert_parse_error};
use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("netbootd-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tftp_only_config_takes_every_default() {
    let c = Config::from_toml_str("[tftp]\nroot = \"/srv/netboot\"\n").unwrap();
    assert!(c.dhcp.interfaces.is_empty() && c.dhcp.subnets.is_empty());
    assert_eq!(c.http, None);
    let t = c.tftp.unwrap();
    assert_eq!(
        t,
        TftpConfig {
            root: PathBuf::from("/srv/netboot"),
            listen: "0.0.0.0:69".parse().unwrap(),
            max_blksize: None,
            max_windowsize: 64,
            max_transfers: 256,
            max_queue: 1024,
            timeout: Duration::from_secs(1),
            max_retries: 5,
            driver: TftpDriver::Auto,
            rate_limit_per_ip: DEFAULT_TFTP_RATE_LIMIT,
        }
    );
}

#[test]
fn tftp_keys_are_read() {
    let c = Config::from_toml_str(
        r#"
[tftp]
root = "/srv/tftp"
listen = "10.77.0.1:6969"
max_blksize = 8192
max_windowsize = 16
max_transfers = 10
timeout = "250ms"
max_retries = 0
driver = "tokio"
"#,
    )
    .unwrap();
    let t = c.tftp.unwrap();
    assert_eq!(t.listen, "10.77.0.1:6969".parse().unwrap());
    assert_eq!(t.max_blksize, Some(8192));
    assert_eq!(t.max_windowsize, 16);
    assert_eq!(t.max_transfers, 10);
    assert_eq!(t.max_queue, 40, "the queue defaults to 4 × max_transfers");
    assert_eq!(t.timeout, Duration::from_millis(250));
    assert_eq!(t.max_retries, 0);
    assert_eq!(t.driver, TftpDriver::Tokio);
    for (text, driver) in [("auto", TftpDriver::Auto), ("uring", TftpDriver::Uring)] {
        let c = Config::from_toml_str(&format!(
            "[tftp]\nroot = \"/x\"\ndriver = \"{text}\"\nmax_queue = 0\n"
        ))
        .unwrap();
        let t = c.tftp.unwrap();
        assert_eq!((t.driver, t.max_queue), (driver, 0));
    }
    let c = Config::from_toml_str("[tftp]\nroot = \"/x\"\nmax_blksize = 8\n").unwrap();
    assert_eq!(c.tftp.unwrap().max_blksize, Some(8));
    let c = Config::from_toml_str("[tftp]\nroot = \"/x\"\nmax_blksize = 65464\n").unwrap();
    assert_eq!(c.tftp.unwrap().max_blksize, Some(65464));
}

#[test]
fn tftp_validation_errors() {
    let t = |body: &str| format!("[tftp]\nroot = \"/srv/netboot\"\n{body}\n");
    assert_invalid(
        "[tftp]\nlisten = \"0.0.0.0:69\"\n",
        "tftp.root",
        "is missing",
    );
    assert_invalid(
        "[tftp]\nroot = \" \"\n",
        "tftp.root",
        "not a directory path",
    );
    assert_invalid(&t("listen = \"0.0.0.0\""), "tftp.listen", "address:port");
    assert_invalid(&t("max_blksize = 7"), "tftp.max_blksize", "8–65464");
    assert_invalid(&t("max_blksize = 65465"), "tftp.max_blksize", "RFC 2348");
    assert_invalid(&t("max_windowsize = 0"), "tftp.max_windowsize", "is 0");
    assert_invalid(&t("max_transfers = 0"), "tftp.max_transfers", "1–16384");
    assert_invalid(
        &t("max_transfers = 100000"),
        "tftp.max_transfers",
        "UDP port",
    );
    assert_invalid(&t("timeout = \"5ms\""), "tftp.timeout", "5ms is outside");
    assert_invalid(&t("timeout = 300"), "tftp.timeout", "outside");
    assert_invalid(&t("max_retries = 101"), "tftp.max_retries", "more than 100");
    assert_parse_error(&t("driver = \"io_uring\""), &["io_uring", "uring", "tokio"]);
    assert_parse_error(&t("blksize = 1468"), &["blksize", "line 3"]);
    assert_parse_error(&t("max_blksize = 70000"), &["line 3"]);
}

#[test]
fn tftp_errors_name_the_section_line() {
    let err =
        Config::from_toml_str("log_format = \"text\"\n\n[tftp]\nmax_windowsize = 0\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config:3: tftp.root is missing"),
        "{err}"
    );
}

#[test]
fn http_defaults_follow_tftp_and_interfaces() {
    let c = Config::from_toml_str(
        "[tftp]\nroot = \"/srv/netboot\"\n[http]\nlisten = \"10.77.0.1:8080\"\n",
    )
    .unwrap();
    assert_eq!(
        c.http.unwrap(),
        HttpConfig {
            listen: "10.77.0.1:8080".parse().unwrap(),
            root: PathBuf::from("/srv/netboot"),
            public_url: "http://10.77.0.1:8080".into(),
            max_downloads: 256,
        }
    );
    // A wildcard listen takes its host from the first interface.
    let c = Config::from_toml_str(
        r#"
[[interface]]
name = "eth1"
address = "10.77.0.1"
[[subnet]]
cidr = "10.77.0.0/24"
[http]
listen = "0.0.0.0:8080"
root = "/srv/http"
max_downloads = 8
"#,
    )
    .unwrap();
    let h = c.http.unwrap();
    assert_eq!(h.public_url, "http://10.77.0.1:8080");
    assert_eq!(h.root, PathBuf::from("/srv/http"));
    assert_eq!(h.max_downloads, 8);
    // IPv6 listen addresses are bracketed; an explicit URL loses its trailing slash.
    let c = Config::from_toml_str("[http]\nlisten = \"[::1]:80\"\nroot = \"/r\"\n").unwrap();
    assert_eq!(c.http.unwrap().public_url, "http://[::1]:80");
    let c = Config::from_toml_str(
        "[http]\nlisten = \"0.0.0.0:80\"\nroot = \"/r\"\npublic_url = \"https://boot.example/edge1/\"\n",
    )
    .unwrap();
    assert_eq!(c.http.unwrap().public_url, "https://boot.example/edge1");
}

#[test]
fn http_validation_errors() {
    assert_invalid("[http]\nroot = \"/r\"\n", "http.listen", "is missing");
    assert_invalid(
        "[http]\nlisten = \"8080\"\nroot = \"/r\"\n",
        "http.listen",
        "address:port",
    );
    assert_invalid(
        "[http]\nlisten = \"10.0.0.1:8080\"\n",
        "http.root",
        "without a [tftp] section",
    );
    assert_invalid(
        "[http]\nlisten = \"0.0.0.0:8080\"\nroot = \"/r\"\n",
        "http.public_url",
        "wildcard",
    );
    for bad in [
        "10.0.0.1:8080",
        "ftp://x",
        "http://",
        "http://a b",
        "http:///x",
    ] {
        assert_invalid(
            &format!("[http]\nlisten = \"10.0.0.1:8080\"\nroot = \"/r\"\npublic_url = \"{bad}\"\n"),
            "http.public_url",
            "base URL",
        );
    }
    assert_invalid(
        "[http]\nlisten = \"10.0.0.1:8080\"\nroot = \"/r\"\nmax_downloads = 0\n",
        "http.max_downloads",
        "is 0",
    );
    assert_parse_error(
        "[http]\nlisten = \"10.0.0.1:8080\"\nroot = \"/r\"\nport = 80\n",
        &["port", "line 4"],
    );
}

#[test]
fn boot_profile_script_keys() {
    let c = Config::from_toml_str(
        r#"
[[boot_profile]]
name = "linux"
kernel = "linux/vmlinuz"
initrd = "http://10.77.0.1:8080/linux/initrd.img"
cmdline = "console=ttyS0 hostname={hostname} ip={ip} BOOTIF={mac} phone_home={phone_home}"
"#,
    )
    .unwrap();
    let p = &c.dhcp.boot_profiles["linux"];
    assert_eq!(p.kernel.as_deref(), Some("linux/vmlinuz"));
    assert_eq!(
        p.initrd.as_deref(),
        Some("http://10.77.0.1:8080/linux/initrd.img")
    );
    assert!(p.cmdline.as_deref().unwrap().contains("{phone_home}"));
    let c =
        Config::from_toml_str("[[boot_profile]]\nname = \"k\"\nkernel = \"vmlinuz\"\n").unwrap();
    let p = &c.dhcp.boot_profiles["k"];
    assert_eq!((p.initrd.as_deref(), p.cmdline.as_deref()), (None, None));
}

#[test]
fn boot_profile_script_errors() {
    let p = |body: &str| format!("[[boot_profile]]\nname = \"a\"\nkernel = \"vmlinuz\"\n{body}\n");
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\nkernel = \"\"\n",
        "boot_profile[0] (a).kernel",
        "is empty",
    );
    assert_invalid(
        &p("initrd = \" \""),
        "boot_profile[0] (a).initrd",
        "is empty",
    );
    assert_invalid(
        &p("initrd = \"a\\nb\""),
        "boot_profile[0] (a).initrd",
        "control",
    );
    assert_invalid(
        &p("cmdline = \"\""),
        "boot_profile[0] (a).cmdline",
        "is empty",
    );
    assert_invalid(
        &p("cmdline = \"root={rootdev}\""),
        "boot_profile[0] (a).cmdline",
        "unknown placeholder {rootdev}: known are {hostname} {ip} {mac} {phone_home}",
    );
    assert_invalid(
        &p("cmdline = \"host={hostname\""),
        "boot_profile[0] (a).cmdline",
        "unclosed",
    );
    assert_invalid(
        &p("cmdline = \"a={ip{mac}}\""),
        "boot_profile[0] (a).cmdline",
        "unclosed",
    );
    assert_invalid(
        &p("cmdline = \"a=b}\""),
        "boot_profile[0] (a).cmdline",
        "without its '{'",
    );
    assert_invalid(
        &p(&format!("cmdline = \"{}\"", "x".repeat(2049))),
        "boot_profile[0] (a).cmdline",
        "2048",
    );
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\ninitrd = \"initrd.img\"\n",
        "boot_profile[0] (a).initrd",
        "without a kernel",
    );
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\ncmdline = \"quiet\"\n",
        "boot_profile[0] (a).cmdline",
        "without a kernel",
    );
}

#[test]
fn filesystem_check_names_the_missing_root() {
    let dir = TempDir::new("fs");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let missing = dir.0.join("missing");
    let config = |tftp: &Path, http: &Path| {
        Config::from_toml_str(&format!(
            "[tftp]\nroot = \"{}\"\n[http]\nlisten = \"127.0.0.1:8080\"\nroot = \"{}\"\n",
            tftp.display(),
            http.display()
        ))
        .unwrap()
    };
    config(&dir.0, &dir.0)
        .check_filesystem("netbootd.toml")
        .unwrap();

    let err = config(&missing, &dir.0)
        .check_filesystem("netbootd.toml")
        .unwrap_err();
    assert_eq!(err.key(), Some("tftp.root"));
    let msg = err.to_string();
    assert!(
        msg.starts_with("netbootd.toml: tftp.root ") && msg.contains("does not exist: create it"),
        "{msg}"
    );
    let err = config(&dir.0, &file).check_filesystem("f").unwrap_err();
    assert_eq!(err.key(), Some("http.root"));
    assert!(err.to_string().contains("is not a directory"), "{err}");
    // Without the sections there is nothing to check.
    Config::default().check_filesystem("f").unwrap();
}

#[test]
fn example_file_documents_tftp_and_http() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/netbootd.toml");
    let c = Config::load(&path).unwrap();
    let t = c.tftp.as_ref().expect("[tftp] in the example");
    assert_eq!(t.root, PathBuf::from("/srv/netboot"));
    assert_eq!(t.listen, "0.0.0.0:69".parse().unwrap());
    assert_eq!(t.max_blksize, None);
    assert_eq!(
        (
            t.max_windowsize,
            t.max_transfers,
            t.max_queue,
            t.max_retries
        ),
        (64, 256, 1024, 5)
    );
    assert_eq!(t.timeout, Duration::from_secs(1));
    assert_eq!(t.driver, TftpDriver::Auto);
    let h = c.http.as_ref().expect("[http] in the example");
    assert_eq!(h.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(h.root, t.root);
    assert_eq!(h.public_url, "http://10.77.0.1:8080");
    assert_eq!(h.max_downloads, 256);
    let p = &c.dhcp.boot_profiles["default"];
    assert!(p.kernel.is_some() && p.initrd.is_some());
    assert!(p.cmdline.as_deref().unwrap().contains("{phone_home}"));
}
