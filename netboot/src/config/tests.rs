//! Config parsing and validation tests.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::*;

const BASE: &str = r#"
[[interface]]
name = "eth1"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
router = "10.77.0.1"
range = ["10.77.0.100", "10.77.0.199"]

[[boot_profile]]
name = "default"
uefi_x64 = "ipxe.efi"
"#;

fn parse(extra: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(&format!("{BASE}\n{extra}"))
}

/// Expect an `Invalid` error at `key` whose problem contains `needle`.
#[track_caller]
pub(super) fn assert_invalid(toml: &str, key: &str, needle: &str) {
    match Config::from_toml_str(toml) {
        Err(ConfigError::Invalid {
            key: got, problem, ..
        }) => {
            assert_eq!(got, key, "problem: {problem}");
            assert!(
                problem.contains(needle),
                "{key}: {problem:?} lacks {needle:?}"
            );
        }
        other => panic!("expected Invalid at {key}, got {other:?}"),
    }
}

/// Expect a toml `Parse` error whose message contains every needle.
#[track_caller]
pub(super) fn assert_parse_error(toml: &str, needles: &[&str]) {
    match Config::from_toml_str(toml) {
        Err(e @ ConfigError::Parse { .. }) => {
            let msg = e.to_string();
            for needle in needles {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            }
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

#[test]
fn every_example_file_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        // deploy/examples also holds other daemons' files (ims-control.toml).
        let ours = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("netbootd"));
        if ours && path.extension().is_some_and(|e| e == "toml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(
        seen >= 1,
        "no example configs found in {}",
        examples_dir().display()
    );
}

#[test]
fn example_file_has_what_it_documents() {
    let c = Config::load(&examples_dir().join("netbootd.toml")).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/netbootd"));
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.dhcp.interfaces.len(), 1);
    assert_eq!(c.dhcp.interfaces[0].name, "eth1");
    assert_eq!(c.dhcp.subnets.len(), 2);
    let s = &c.dhcp.subnets[0];
    assert_eq!(s.lease_time, 3600);
    assert_eq!(
        s.exclude,
        vec![
            (Ipv4Addr::new(10, 77, 0, 150), Ipv4Addr::new(10, 77, 0, 150)),
            (Ipv4Addr::new(10, 77, 0, 160), Ipv4Addr::new(10, 77, 0, 170)),
        ]
    );
    assert_eq!(c.dhcp.subnets[1].lease_time, 12 * 3600);
    assert!(c.dhcp.subnets[1].allow_unknown);
    assert_eq!(c.dhcp.boot_profiles.len(), 2);
    assert_eq!(c.dhcp.machines.len(), 5);
    let gw: MacAddr = "52:54:00:00:01:02".parse().unwrap();
    assert!(!c.dhcp.machines[&gw].netboot);
    assert_eq!(c.dhcp.offer_timeout, 60);
    assert_eq!(c.dhcp.decline_quarantine, 600);
    assert_eq!(c.dhcp_driver.max_batch, 1024);
}

#[test]
fn empty_file_gives_defaults() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/netbootd"));
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.dhcp.interfaces.is_empty() && c.dhcp.subnets.is_empty());
    assert_eq!(
        (
            c.dhcp.offer_timeout,
            c.dhcp.decline_quarantine,
            c.dhcp.unknown_log_per_minute
        ),
        (60, 600, 10)
    );
    assert_eq!(c.dhcp_driver.max_batch, 1024);
}

#[test]
fn entry_defaults_applied() {
    let c = parse(
        r#"
[[machine]]
mac = "52-54-00-AB-CD-EF"
hostname = "node1"
"#,
    )
    .unwrap();
    let s = &c.dhcp.subnets[0];
    assert_eq!(s.lease_time, DEFAULT_LEASE_TIME);
    assert!(!s.allow_unknown);
    assert!(s.dns.is_empty() && s.exclude.is_empty());
    assert_eq!(
        (s.domain.as_deref(), s.boot_profile.as_deref()),
        (None, None)
    );
    let m = c.dhcp.machines.values().next().unwrap();
    assert_eq!(m.mac.to_string(), "52:54:00:AB:CD:EF");
    assert_eq!(
        (m.ip, m.netboot, m.boot_profile.as_deref()),
        (None, true, None)
    );
}

#[test]
fn top_level_settings() {
    let c = Config::from_toml_str(
        r#"
data_dir = "/srv/nb"
metrics_listen = "off"
log_format = "json"
[dhcp]
offer_timeout = 90
decline_quarantine = "1h 30m"
unknown_log_per_minute = 0
max_batch = 64
"#,
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/srv/nb"));
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.dhcp.offer_timeout, 90);
    assert_eq!(c.dhcp.decline_quarantine, 5400);
    assert_eq!(c.dhcp.unknown_log_per_minute, 0);
    assert_eq!(c.dhcp_driver.max_batch, 64);
    let c = Config::from_toml_str("metrics_listen = \"\"").unwrap();
    assert_eq!(c.metrics_listen, None);
    let c = Config::from_toml_str("metrics_listen = \"[::1]:9000\"").unwrap();
    assert_eq!(c.metrics_listen, Some("[::1]:9000".parse().unwrap()));
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    assert_parse_error("data_dri = \"/x\"", &["data_dri", "line 1"]);
    assert_parse_error(
        "[dhcp]\noffer_timeout = 5\nmax_batches = 3\n",
        &["max_batches", "line 3"],
    );
    assert_parse_error(
        &format!(
            "{BASE}\n[[machine]]\nmac = \"52:54:00:00:00:01\"\nhostname = \"a\"\nipaddr = \"10.77.0.5\"\n"
        ),
        &["ipaddr", "line 18"],
    );
    assert_parse_error("[[subnets]]\ncidr = \"10.0.0.0/24\"\n", &["subnets"]);
    assert_parse_error("[dhcp]\n[dhcp.extra]\n", &["extra"]);
}

#[test]
fn syntax_and_type_errors_name_line_and_column() {
    assert_parse_error("data_dir = \n", &["line 1", "column"]);
    assert_parse_error(
        "\n\n[[interface]]\nname = \"eth1\"\naddress = \"10.77.0.300\"\n",
        &["line 5"],
    );
    assert_parse_error("log_format = \"xml\"", &["xml", "text", "json"]);
    assert_parse_error("[dhcp]\nmax_batch = -1\n", &["line 2"]);
    assert_parse_error(
        "[dhcp]\noffer_timeout = \"soon\"\n",
        &["soon", "line 2", "90s"],
    );
    assert_parse_error("[dhcp]\noffer_timeout = -5\n", &["negative"]);
    assert_parse_error("[[machine]]\nmac = \"52:54:00:00:00:01\"\n", &["hostname"]);
}

#[test]
fn invalid_errors_display_file_line_key_and_fix() {
    let toml = format!(
        "{BASE}\n[[machine]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.78.0.5\"\nhostname = \"node1\"\n"
    );
    let err = Config::from_toml_str(&toml).unwrap_err();
    assert_eq!(err.key(), Some("machine[0] (52:54:00:00:00:01).ip"));
    assert_eq!(
        err.to_string(),
        "config:15: machine[0] (52:54:00:00:00:01).ip 10.78.0.5 is outside every [[subnet]]: \
         add a subnet containing it or fix the address"
    );
    // Through a file, the file name leads.
    let dir = std::env::temp_dir().join(format!("netbootd-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, &toml).unwrap();
    let msg = Config::load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        msg.starts_with(&format!("{}:15: machine[0]", path.display())),
        "{msg}"
    );
    // A missing file says which.
    let err = Config::load(Path::new("/nonexistent/netbootd.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/netbootd.toml"),
        "{err}"
    );
}

#[test]
fn global_validation_errors() {
    assert_invalid("data_dir = \" \"", "data_dir", "empty");
    assert_invalid(
        "metrics_listen = \"localhost\"",
        "metrics_listen",
        "\"off\"",
    );
    assert_invalid("[dhcp]\noffer_timeout = 0", "dhcp.offer_timeout", "is 0");
    assert_invalid(
        "[dhcp]\noffer_timeout = \"1500ms\"",
        "dhcp.offer_timeout",
        "whole number",
    );
    assert_invalid("[dhcp]\nmax_batch = 0", "dhcp.max_batch", "is 0");
}

#[test]
fn interface_validation_errors() {
    let subnet = "[[subnet]]\ncidr = \"10.77.0.0/24\"\n";
    let iface = |name: &str, addr: &str| {
        format!("[[interface]]\nname = \"{name}\"\naddress = \"{addr}\"\n")
    };
    assert_invalid(
        &format!("{subnet}{}", iface("", "10.77.0.1")),
        "interface[0].name",
        "1 to 15",
    );
    assert_invalid(
        &format!("{subnet}{}", iface("enp0s31f6-long-name", "10.77.0.1")),
        "interface[0].name",
        "1 to 15",
    );
    assert_invalid(
        &format!("{subnet}{}", iface("eth 1", "10.77.0.1")),
        "interface[0].name",
        "spaces",
    );
    assert_invalid(
        &format!(
            "{subnet}{}{}",
            iface("eth1", "10.77.0.1"),
            iface("eth1", "10.77.0.2")
        ),
        "interface[1] (eth1).name",
        "already interface[0]",
    );
    assert_invalid(
        &format!("{subnet}{}", iface("eth1", "10.99.0.1")),
        "interface[0] (eth1).address",
        "outside every [[subnet]]",
    );
    assert_invalid(
        &format!("{subnet}{}", iface("eth1", "10.77.0.255")),
        "interface[0] (eth1).address",
        "broadcast",
    );
    // Exactly 15 characters is fine.
    Config::from_toml_str(&format!(
        "{subnet}{}",
        iface("abcdefghijklmno", "10.77.0.1")
    ))
    .unwrap();
}

#[test]
fn subnet_validation_errors() {
    let sub = |body: &str| format!("[[subnet]]\ncidr = \"10.77.0.0/24\"\n{body}\n");
    assert_invalid(
        "[[subnet]]\ncidr = \"10.77.0/24\"",
        "subnet[0].cidr",
        "not an IPv4 network",
    );
    assert_invalid(
        "[[subnet]]\ncidr = \"10.77.0.5/24\"",
        "subnet[0].cidr",
        "did you mean 10.77.0.0/24",
    );
    assert_invalid(
        "[[subnet]]\ncidr = \"10.77.0.4/31\"",
        "subnet[0].cidr",
        "too small",
    );
    assert_invalid(
        &format!("{}[[subnet]]\ncidr = \"10.77.0.128/25\"\n", sub("")),
        "subnet[1].cidr",
        "overlaps subnet[0] (10.77.0.0/24)",
    );
    // Overlap found whatever the file order, and not confused by disjoint neighbours.
    assert_invalid(
        "[[subnet]]\ncidr = \"10.77.0.0/24\"\n[[subnet]]\ncidr = \"10.0.0.0/8\"\n[[subnet]]\ncidr = \"192.168.0.0/16\"\n",
        "subnet[1].cidr",
        "overlaps subnet[0]",
    );
    Config::from_toml_str(
        "[[subnet]]\ncidr = \"10.77.0.0/24\"\n[[subnet]]\ncidr = \"10.77.1.0/24\"\n",
    )
    .unwrap();
    assert_invalid(
        &sub("range = [\"10.77.0.100\", \"10.77.1.10\"]"),
        "subnet[0] (10.77.0.0/24).range",
        "outside",
    );
    assert_invalid(
        &sub("range = [\"10.77.0.200\", \"10.77.0.100\"]"),
        "subnet[0] (10.77.0.0/24).range",
        "after its end",
    );
    assert_invalid(
        &sub("exclude = [\"10.78.0.1\"]"),
        "subnet[0] (10.77.0.0/24).exclude[0]",
        "outside",
    );
    assert_invalid(
        &sub("exclude = [\"10.77.0.1\", \"10.77.0.9-10.77.0.3\"]"),
        "subnet[0] (10.77.0.0/24).exclude[1]",
        "after its end",
    );
    assert_invalid(
        &sub("exclude = [\"ten\"]"),
        "subnet[0] (10.77.0.0/24).exclude[0]",
        "not an address",
    );
    assert_invalid(
        &sub("router = \"10.78.0.1\""),
        "subnet[0] (10.77.0.0/24).router",
        "outside",
    );
    assert_invalid(
        &sub("router = \"10.77.0.0\""),
        "subnet[0] (10.77.0.0/24).router",
        "network",
    );
    assert_invalid(
        &sub("lease_time = \"59s\""),
        "subnet[0] (10.77.0.0/24).lease_time",
        "minimum of 60 s",
    );
    assert_invalid(
        &sub("lease_time = 59"),
        "subnet[0] (10.77.0.0/24).lease_time",
        "minimum",
    );
    assert_invalid(
        &sub("lease_time = 4294967295"),
        "subnet[0] (10.77.0.0/24).lease_time",
        "too long",
    );
    assert_invalid(
        &sub("domain = \"-bad.example\""),
        "subnet[0] (10.77.0.0/24).domain",
        "not a valid domain",
    );
    assert_invalid(
        &sub("boot_profile = \"nope\""),
        "subnet[0] (10.77.0.0/24).boot_profile",
        "none is defined",
    );
    assert_invalid(
        &sub("next_server = \"255.255.255.255\""),
        "subnet[0] (10.77.0.0/24).next_server",
        "unicast",
    );
    let c = Config::from_toml_str(&sub(
        "lease_time = 60\nexclude = [\"10.77.0.5 - 10.77.0.6\"]",
    ))
    .unwrap();
    assert_eq!(c.dhcp.subnets[0].lease_time, 60);
    assert_eq!(
        c.dhcp.subnets[0].exclude,
        vec![(Ipv4Addr::new(10, 77, 0, 5), Ipv4Addr::new(10, 77, 0, 6))]
    );
}

#[test]
fn boot_profile_validation_errors() {
    assert_invalid(
        "[[boot_profile]]\nname = \"\"",
        "boot_profile[0].name",
        "non-empty",
    );
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\n[[boot_profile]]\nname = \"a\"",
        "boot_profile[1] (a).name",
        "already the name of boot_profile[0]",
    );
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\nbios = \"\"",
        "boot_profile[0] (a).bios",
        "empty",
    );
    assert_invalid(
        &format!(
            "[[boot_profile]]\nname = \"a\"\nuefi_x64 = \"{}\"",
            "x".repeat(256)
        ),
        "boot_profile[0] (a).uefi_x64",
        "256 bytes",
    );
    assert_invalid(
        "[[boot_profile]]\nname = \"a\"\nhttp = \"tftp://10.0.0.1/ipxe.efi\"",
        "boot_profile[0] (a).http",
        "http://",
    );
    assert_invalid(
        &format!("{BASE}[[subnet]]\ncidr = \"10.9.0.0/24\"\nboot_profile = \"rescue\"\n"),
        "subnet[1] (10.9.0.0/24).boot_profile",
        "defined: default",
    );
}

#[test]
fn machine_validation_errors() {
    let m = |body: &str| format!("{BASE}\n[[machine]]\n{body}\n");
    assert_invalid(
        &m("mac = \"52:54:00:00:00\"\nhostname = \"a\""),
        "machine[0].mac",
        "six hex octets",
    );
    assert_invalid(
        &m("mac = \"01:00:5e:00:00:01\"\nhostname = \"a\""),
        "machine[0] (01:00:5E:00:00:01).mac",
        "multicast",
    );
    assert_invalid(
        &m("mac = \"00:00:00:00:00:00\"\nhostname = \"a\""),
        "machine[0] (00:00:00:00:00:00).mac",
        "all-zero",
    );
    assert_invalid(
        &m(
            "mac = \"52:54:00:00:00:01\"\nhostname = \"a\"\n[[machine]]\nmac = \"525400000001\"\nhostname = \"b\"",
        ),
        "machine[1] (52:54:00:00:00:01).mac",
        "already machine[0]",
    );
    assert_invalid(
        &m(
            "mac = \"52:54:00:00:00:01\"\nip = \"10.77.0.10\"\nhostname = \"a\"\n[[machine]]\nmac = \"52:54:00:00:00:02\"\nip = \"10.77.0.10\"\nhostname = \"b\"",
        ),
        "machine[1] (52:54:00:00:00:02).ip",
        "already reserved for machine[0]",
    );
    let ip = |addr: &str| {
        m(&format!(
            "mac = \"52:54:00:00:00:01\"\nip = \"{addr}\"\nhostname = \"a\""
        ))
    };
    assert_invalid(
        &ip("10.78.0.5"),
        "machine[0] (52:54:00:00:00:01).ip",
        "outside every [[subnet]]",
    );
    assert_invalid(
        &ip("10.77.0.0"),
        "machine[0] (52:54:00:00:00:01).ip",
        "network or broadcast",
    );
    assert_invalid(
        &ip("10.77.0.255"),
        "machine[0] (52:54:00:00:00:01).ip",
        "network or broadcast",
    );
    assert_invalid(
        &ip("10.77.0.1"),
        "machine[0] (52:54:00:00:00:01).ip",
        "[[interface]] address",
    );
    for bad in [
        "",
        "-node",
        "node-",
        "no_de",
        "a..b",
        &"x".repeat(64),
        &["abc"; 64].join("."),
    ] {
        assert_invalid(
            &m(&format!(
                "mac = \"52:54:00:00:00:01\"\nhostname = \"{bad}\""
            )),
            "machine[0] (52:54:00:00:00:01).hostname",
            "not a valid hostname",
        );
    }
    assert_invalid(
        &m("mac = \"52:54:00:00:00:01\"\nhostname = \"a\"\nboot_profile = \"x\""),
        "machine[0] (52:54:00:00:00:01).boot_profile",
        "names no [[boot_profile]]",
    );
    // No ip and no subnet with a range anywhere.
    assert_invalid(
        "[[subnet]]\ncidr = \"10.77.0.0/24\"\n[[machine]]\nmac = \"52:54:00:00:00:01\"\nhostname = \"a\"",
        "machine[0] (52:54:00:00:00:01).ip",
        "no [[subnet]] has a range",
    );
    // The router's address is not a machine's.
    let toml = "[[subnet]]\ncidr = \"10.77.0.0/24\"\nrouter = \"10.77.0.254\"\n[[machine]]\nmac = \"52:54:00:00:00:01\"\nip = \"10.77.0.254\"\nhostname = \"a\"";
    assert_invalid(toml, "machine[0] (52:54:00:00:00:01).ip", "router");
}

#[test]
fn hostnames() {
    for ok in [
        "a",
        "node1",
        "master-0",
        "storage-0.rack2.edge1.example",
        "0",
        &"x".repeat(63),
    ] {
        assert!(is_valid_hostname(ok), "{ok}");
    }
    let long = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(long.len(), 253);
    assert!(is_valid_hostname(&long));
    assert!(!is_valid_hostname(&format!("{long}e")));
    for bad in [
        "",
        ".",
        "a.",
        ".a",
        "a b",
        "nödé",
        "a-",
        "-a",
        "a_b",
        &"x".repeat(64),
    ] {
        assert!(!is_valid_hostname(bad), "{bad}");
    }
}

#[test]
fn try_from_raw_validates_without_line_numbers() {
    let raw: raw::RawConfig =
        toml::from_str("[[subnet]]\ncidr = \"10.77.0.0/24\"\nrouter = \"10.1.1.1\"\n").unwrap();
    let err = Config::try_from(raw).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: subnet[0] (10.77.0.0/24).router 10.1.1.1 is outside 10.77.0.0/24"
    );
}

#[test]
fn twenty_thousand_machines_load_fast() {
    let mut toml = String::from(
        "[[interface]]\nname = \"eth1\"\naddress = \"10.64.0.1\"\n\
         [[subnet]]\ncidr = \"10.64.0.0/16\"\nrouter = \"10.64.0.1\"\nrange = [\"10.64.200.0\", \"10.64.255.254\"]\n\
         [[boot_profile]]\nname = \"default\"\nuefi_x64 = \"ipxe.efi\"\n",
    );
    for i in 0..20_000u32 {
        let [_, _, hi, lo] = (i + 2).to_be_bytes();
        let [_, _, m1, m2] = i.to_be_bytes();
        let _ = write!(
            toml,
            "\n[[machine]]\nmac = \"52:54:00:01:{m1:02x}:{m2:02x}\"\nip = \"10.64.{hi}.{lo}\"\nhostname = \"node{i}\"\n"
        );
    }
    let dir = std::env::temp_dir().join(format!("netbootd-config-20k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("netbootd.toml");
    std::fs::write(&path, &toml).unwrap();
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let result = Config::load(&path);
    let elapsed = start.elapsed();
    std::fs::remove_dir_all(&dir).unwrap();
    let c = result.unwrap();
    println!(
        "loaded 20000 [[machine]] entries ({} bytes) in {elapsed:?}",
        toml.len()
    );
    assert_eq!(c.dhcp.machines.len(), 20_000);
    assert!(elapsed.as_secs_f64() < 1.0, "took {elapsed:?}");
}
