//! The control plane of the lab: `ims-control serve` in the site namespace (SQLite in the lab's
//! temporary directory, a generated admin password), and what the lab does over its REST API:
//! log in, register the site, IP pool, boot profile, cluster and machines, mint a join token,
//! and watch machines turn `ACTIVE`.
//!
//! REST calls use [`crate::api_bench::http::Conn`]; they must be made from a thread that can
//! reach [`super::netns::CONTROL_IP`] (the lab's worker thread lives in the client namespace,
//! which shares the site's bridge).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ims_proto::MacAddr;
use serde_json::{Value, json};

use super::LabError;
use super::netns::{CIDR, CONTROL_IP, EDGE_IP, RANGE_END, RANGE_START};
use super::procs::Child;
use crate::api_bench::http::Conn;

/// REST (and UI) port of `ims-control`.
pub const REST_PORT: u16 = 8000;
/// QUIC uplink port of `ims-control`.
pub const QUIC_PORT: u16 = 7443;
/// The site, cluster and boot profile names the lab registers.
pub const SITE: &str = "lab";
/// The cluster the lab's machines belong to.
pub const CLUSTER: &str = "lab-cluster";
const PROFILE: &str = "lab-uefi";

/// The REST address.
pub fn rest_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(CONTROL_IP, REST_PORT))
}

/// The QUIC uplink address.
pub fn quic_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(CONTROL_IP, QUIC_PORT))
}

/// A random admin password (16 bytes from the kernel's CSPRNG, hex).
///
/// # Errors
/// `/dev/urandom` cannot be read.
pub fn generate_password() -> Result<String, LabError> {
    use std::io::Read;
    let mut bytes = [0u8; 12];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LabError::Setup(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Start `ims-control serve` in namespace `ns` with its data in `data_dir`.
///
/// # Errors
/// The process cannot be started.
pub fn start(
    program: &Path,
    ns: &str,
    data_dir: &Path,
    password: &str,
    log_dir: &Path,
) -> Result<Child, LabError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| LabError::Setup(format!("create {}: {e}", data_dir.display())))?;
    let listen = rest_addr().to_string();
    let quic = quic_addr().to_string();
    let data = data_dir.display().to_string();
    Child::spawn(
        "ims-control",
        ns,
        program,
        &[
            "serve",
            "--listen",
            &listen,
            "--quic-listen",
            &quic,
            "--heartbeat-interval",
            "2s",
            "--data-dir",
            &data,
        ],
        &[("IMS_ADMIN_PASSWORD", password), ("RUST_LOG", "info")],
        log_dir,
    )
}

/// `ims-control join-token --site lab`: the token (last line of its output).
///
/// # Errors
/// The command fails or prints nothing.
pub fn join_token(program: &Path, data_dir: &Path) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(["join-token", "--site", SITE, "--data-dir"])
        .arg(data_dir)
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run {}: {e}", program.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(str::trim) {
        Some(t) if out.status.success() && !t.is_empty() => Ok(t.to_owned()),
        _ => Err(LabError::Setup(format!(
            "ims-control join-token failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// A logged-in REST client.
#[derive(Debug)]
pub struct Rest {
    conn: Conn,
    token: String,
}

impl Rest {
    /// Log in as `admin`, retrying (every 200 ms, at most `wait`) while the server starts;
    /// gives up early when `cancel` is set.
    ///
    /// # Errors
    /// No successful login within `wait`, or cancelled.
    #[allow(clippy::disallowed_methods)] // bounded wait on a real server
    pub fn login(password: &str, wait: Duration, cancel: &AtomicBool) -> Result<Self, LabError> {
        let deadline = std::time::Instant::now() + wait;
        let body = json!({"username": "admin", "password": password}).to_string();
        loop {
            let mut conn = Conn::new(rest_addr());
            let last = match conn.request("POST", "/api/token/", None, Some(body.as_bytes())) {
                Ok(r) if r.status == 200 => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    if let Some(token) = v["access"].as_str() {
                        return Ok(Self {
                            conn,
                            token: token.to_owned(),
                        });
                    }
                    "login answer without an access token".to_owned()
                }
                Ok(r) => format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => e.to_string(),
            };
            if cancel.load(Ordering::Relaxed) {
                return Err(LabError::Interrupted);
            }
            if std::time::Instant::now() >= deadline {
                return Err(LabError::Setup(format!(
                    "ims-control did not accept the admin login on {} within {wait:?} (last: {last})",
                    rest_addr()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One JSON request: `(status, body)`.
    ///
    /// # Errors
    /// The request failed on the wire.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), LabError> {
        let text = body.map(Value::to_string);
        let r = self
            .conn
            .request(
                method,
                path,
                Some(&self.token),
                text.as_deref().map(str::as_bytes),
            )
            .map_err(|e| LabError::Control(format!("{method} {path}: {e}")))?;
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        Ok((r.status, v))
    }

    fn create(&mut self, path: &str, body: &Value) -> Result<Value, LabError> {
        let (status, v) = self.call("POST", path, Some(body))?;
        if status == 201 {
            Ok(v)
        } else {
            Err(LabError::Control(format!(
                "POST {path} {body}: HTTP {status}: {v}"
            )))
        }
    }

    /// Register the site, its IP pool, the boot profile, the cluster and `macs` as machines
    /// (netboot on, hostnames `node-0001`…), calling `progress` after each machine.
    ///
    /// # Errors
    /// A refused request.
    pub fn register(
        &mut self,
        macs: &[MacAddr],
        mut progress: impl FnMut(usize),
    ) -> Result<(), LabError> {
        self.create("/api/sites", &json!({"name": SITE}))?;
        self.create(
            "/api/ippools",
            &json!({"site": SITE, "cidr": CIDR, "gateway": EDGE_IP.to_string(),
                    "range_start": RANGE_START.to_string(), "range_end": RANGE_END.to_string()}),
        )?;
        self.create(
            "/api/boot-profiles",
            &json!({"name": PROFILE, "site": SITE, "bios": "undionly.kpxe",
                    "uefi_x64": "ipxe.efi", "kernel": "vmlinuz", "initrd": "initrd.img",
                    "cmdline": "console=ttyS0 ip={ip} BOOTIF={mac} phone_home={phone_home}"}),
        )?;
        self.create("/api/cluster", &json!({"name": CLUSTER, "site": SITE}))?;
        for (i, mac) in macs.iter().enumerate() {
            self.create(
                "/api/machines",
                &json!({"cluster": CLUSTER, "hostname": format!("node-{:04}", i + 1),
                        "mac": mac.to_string(), "boot_profile": PROFILE, "netboot": true}),
            )?;
            progress(i + 1);
        }
        Ok(())
    }

    /// The MACs (lower-case) of the lab's machines that are `ACTIVE` now.
    ///
    /// # Errors
    /// A failed or refused request.
    pub fn active_macs(&mut self) -> Result<BTreeSet<String>, LabError> {
        let path = format!("/api/machines?cluster={CLUSTER}&status=ACTIVE&page_size=10000");
        let (status, v) = self.call("GET", &path, None)?;
        if status != 200 {
            return Err(LabError::Control(format!("GET {path}: HTTP {status}: {v}")));
        }
        Ok(v["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["mac"].as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default())
    }
}
