//! A TFTP/HTTP boot-file lab on top of [`Site`]: a served root with files made at test time,
//! `cli0` addressed as 10.77.0.2, netbootd started with a chosen TFTP driver, and the real
//! clients we did not write (tftp-hpa's `tftp`, `atftp`, `curl`) run in the client namespace.
//!
//! Downloads land in `<site dir>/dl/`; every check compares bytes exactly and names the first
//! differing offset.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::site::{BgId, CLIENT_IF, SERVER_IP, Site, ip};
use super::tftp_wire::{FetchError, Fetched, UdpClient, fetch};
use super::{Outcome, tool};

/// The client namespace's address on `cli0`.
pub(crate) const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// netbootd's TFTP listener.
pub(crate) const TFTP_ADDR: SocketAddrV4 = SocketAddrV4::new(SERVER_IP, 69);
/// netbootd's HTTP listener in the labs.
pub(crate) const HTTP_ADDR: SocketAddrV4 = SocketAddrV4::new(SERVER_IP, 8080);
/// How long a single real-client download may take (40 MiB at 512-byte blocks is ~6 s here).
pub(crate) const XFER_TIMEOUT: Duration = Duration::from_secs(120);

/// Which TFTP driver netbootd must run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// Plain tokio sockets.
    Tokio,
    /// io_uring (tokio-uring).
    Uring,
}

impl Driver {
    /// The name in the config, in `NETBOOTD_TFTP_DRIVER` and in the `netbootd_tftp_driver` label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Uring => "uring",
        }
    }

    /// Fail loudly, before anything starts, if this kernel refuses io_uring to us.
    pub(crate) fn require_kernel_support(self) {
        if self != Self::Uring {
            return;
        }
        let path = "/proc/sys/kernel/io_uring_disabled";
        match std::fs::read_to_string(path) {
            Ok(v) if v.trim() == "0" => {}
            Ok(v) => panic!(
                "io_uring is disabled on this kernel ({path} = {}): the uring TFTP driver cannot \
                 be tested here. Enable it with `sysctl kernel.io_uring_disabled=0`, or skip these \
                 tests with `-- --skip uring::` (the tokio variants still run).",
                v.trim()
            ),
            // Kernels before 6.6 have no such switch: io_uring is on unless seccomp blocks it,
            // which netbootd's start-up then reports.
            Err(_) => {}
        }
    }
}

/// A test LAN serving a TFTP root; see the module docs.
#[derive(Debug)]
pub(crate) struct Lab {
    /// The namespaces and the daemon.
    pub(crate) site: Site,
    /// The served directory.
    pub(crate) root: PathBuf,
    /// The TFTP driver forced on netbootd (`None`: the daemon's own choice).
    pub(crate) driver: Option<Driver>,
    dl: PathBuf,
    spawned: u32,
}

impl Lab {
    /// A site with an empty root and `cli0` at [`CLIENT_IP`]/24.
    pub(crate) fn new(tag: &str, driver: Option<Driver>) -> Self {
        if let Some(d) = driver {
            d.require_kernel_support();
        }
        let site = Site::new(tag);
        ip(&[
            "-n",
            &site.client_ns,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            CLIENT_IF,
        ]);
        let root = site.dir().join("root");
        let dl = site.dir().join("dl");
        for d in [&root, &dl] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        Self {
            site,
            root,
            driver,
            dl,
            spawned: 0,
        }
    }

    /// The `[tftp]` section: root, listener, the forced driver, plus `extra` lines.
    pub(crate) fn tftp_section(&self, extra: &str) -> String {
        let driver = self
            .driver
            .map(|d| format!("driver = \"{}\"\n", d.name()))
            .unwrap_or_default();
        format!(
            "[tftp]\nroot = \"{}\"\nlisten = \"{TFTP_ADDR}\"\n{driver}{extra}\n",
            self.root.display()
        )
    }

    /// Start netbootd with `body` (which holds a `[tftp]` section from [`Self::tftp_section`]
    /// and/or an `[http]` section), the driver also forced through `NETBOOTD_TFTP_DRIVER`; once
    /// `/readyz` answers 200 ([`Site::start_netbootd`]), check that UDP port 69 is open when
    /// `[tftp]` is configured (readiness promises it: no further wait) and, with a forced driver,
    /// that `netbootd_tftp_driver` names the driver asked for (set before TFTP reports ready).
    pub(crate) fn start(&mut self, body: &str) {
        if let Some(d) = self.driver {
            self.site.set_daemon_env("NETBOOTD_TFTP_DRIVER", d.name());
        }
        self.site.start_netbootd(body);
        if !body.contains("[tftp]") {
            return;
        }
        let ns = self.site.server_ns.clone();
        let out = self
            .site
            .run_in(&ns, &["ss", "-Hlun", "sport = :69"], Duration::from_secs(5));
        assert!(
            out.stdout.contains(":69"),
            "netbootd answers /readyz with 200 but nothing listens on UDP port 69\n{}",
            self.site.daemon_log()
        );
        if let Some(d) = self.driver {
            // `/readyz` reports TFTP ready only after its driver thread runs and has set
            // `netbootd_tftp_driver`: one read is enough (stricter than waiting for it).
            let page = self.site.metrics();
            let running = super::observe::metric_value(
                &page,
                "netbootd_tftp_driver",
                &[("driver", d.name())],
            );
            assert_eq!(
                running,
                1.0,
                "netbootd was told to run the {} TFTP driver (config and NETBOOTD_TFTP_DRIVER), \
                 but netbootd_tftp_driver{{driver=\"{}\"}} is {running}.\n--- netbootd_tftp_driver \
                 samples:\n{}\n{}",
                d.name(),
                d.name(),
                page.lines()
                    .filter(|l| l.starts_with("netbootd_tftp_driver"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.site.daemon_log()
            );
        }
    }

    /// Write `bytes` to `rel` under the root (parents created).
    pub(crate) fn put(&self, rel: &str, bytes: &[u8]) {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Write `len` random bytes (fresh for every run) to `rel`; returns them.
    pub(crate) fn put_random(&self, rel: &str, len: usize) -> Vec<u8> {
        let bytes = random_bytes(len, fresh_seed());
        self.put(rel, &bytes);
        bytes
    }

    /// Where a download named `name` goes (any old copy removed).
    pub(crate) fn dl_path(&self, name: &str) -> PathBuf {
        let p = self.dl.join(name);
        let _ = std::fs::remove_file(&p);
        p
    }

    /// Run `argv` in the client namespace, bounded by `timeout`.
    pub(crate) fn client(&self, argv: &[&str], timeout: Duration) -> Outcome {
        self.site.run_in(&self.site.client_ns, argv, timeout)
    }

    /// tftp-hpa: `tftp -v -m MODE 10.77.0.1 -c get REMOTE LOCAL` (512-byte blocks: it sends no
    /// options).
    pub(crate) fn tftp_hpa_get(&self, remote: &str, local: &Path, mode: &str) -> Outcome {
        let tftp = tool("tftp");
        let local = local.display().to_string();
        let server = SERVER_IP.to_string();
        self.client(
            &[
                &tftp, "-v", "-m", mode, &server, "-c", "get", remote, &local,
            ],
            XFER_TIMEOUT,
        )
    }

    /// atftp: `atftp [--option "NAME VALUE"]… -g -r REMOTE -l LOCAL 10.77.0.1`.
    pub(crate) fn atftp_get(&self, remote: &str, local: &Path, opts: &[(&str, &str)]) -> Outcome {
        let atftp = tool("atftp");
        let local = local.display().to_string();
        let server = SERVER_IP.to_string();
        let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mut argv: Vec<&str> = vec![&atftp];
        for o in &opts {
            argv.extend(["--option", o.as_str()]);
        }
        argv.extend(["-g", "-r", remote, "-l", &local, &server]);
        self.client(&argv, XFER_TIMEOUT)
    }

    /// curl: `curl -sS --tftp-blksize N -o LOCAL tftp://10.77.0.1/REMOTE` (curl's default
    /// block size without `blksize`).
    pub(crate) fn curl_tftp_get(
        &self,
        remote: &str,
        local: &Path,
        blksize: Option<u16>,
    ) -> Outcome {
        let argv = curl_tftp_argv(remote, local, blksize);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.client(&argv, XFER_TIMEOUT)
    }

    /// Start `argv` in the client namespace in the background (killed when the site drops).
    pub(crate) fn spawn_client(&mut self, argv: &[String]) -> BgId {
        self.spawned += 1;
        let label = format!("client-{}", self.spawned);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ns = self.site.client_ns.clone();
        self.site.spawn_background(&label, &ns, &argv)
    }

    /// Wait until every background client in `ids` has exited or `timeout` passed, calling
    /// `tick` about every 50 ms meanwhile. Returns each exit status (`None`: still running).
    pub(crate) fn wait_clients(
        &mut self,
        ids: &[BgId],
        timeout: Duration,
        mut tick: impl FnMut(&Site),
    ) -> Vec<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let mut status: Vec<Option<ExitStatus>> = vec![None; ids.len()];
        loop {
            for (i, id) in ids.iter().enumerate() {
                if status[i].is_none() {
                    status[i] = self.site.wait_background(*id, Duration::ZERO);
                }
            }
            if status.iter().all(Option::is_some) || Instant::now() >= deadline {
                return status;
            }
            tick(&self.site);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A UDP socket of our own in the client namespace.
    pub(crate) fn udp(&self) -> UdpClient {
        UdpClient::open(&self.site.client_ns)
    }

    /// Download `name` with our own client (see [`fetch`]), bounded by 60 s.
    pub(crate) fn fetch(
        &self,
        name: &[u8],
        mode: &str,
        opts: &[(&str, &str)],
    ) -> Result<Fetched, FetchError> {
        let c = self.udp();
        fetch(
            &c,
            SocketAddr::V4(TFTP_ADDR),
            name,
            mode,
            opts,
            Duration::from_secs(60),
            |_, _| {},
        )
    }

    /// The sum of metric `name{labels}` now.
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.site.metric(name, labels)
    }

    /// The daemon log and non-zero metrics, for failure messages.
    pub(crate) fn context(&self) -> String {
        format!(
            "{}\n{}",
            self.site.metrics_summary(),
            self.site.daemon_log()
        )
    }
}

/// The argv of a curl TFTP download.
pub(crate) fn curl_tftp_argv(remote: &str, local: &Path, blksize: Option<u16>) -> Vec<String> {
    let mut argv = vec![
        tool("curl"),
        "-sS".to_owned(),
        "--max-time".to_owned(),
        "300".to_owned(),
    ];
    if let Some(b) = blksize {
        argv.extend(["--tftp-blksize".to_owned(), b.to_string()]);
    }
    argv.extend([
        "-o".to_owned(),
        local.display().to_string(),
        format!("tftp://{SERVER_IP}/{remote}"),
    ]);
    argv
}

/// Panic unless `outcome` succeeded and the file at `got` holds exactly `want`.
#[track_caller]
pub(crate) fn assert_download(
    what: &str,
    outcome: &Outcome,
    got: &Path,
    want: &[u8],
    ctx: &dyn Fn() -> String,
) {
    if let Err(e) = check_file(got, want) {
        panic!("{what}: {e}\n{outcome}\n{}", ctx());
    }
    assert!(
        outcome.success(),
        "{what}: the file is right but the client failed:\n{outcome}\n{}",
        ctx()
    );
}

/// `Ok` when the file at `got` holds exactly `want`, else what differs.
pub(crate) fn check_file(got: &Path, want: &[u8]) -> Result<(), String> {
    let bytes = std::fs::read(got).map_err(|e| format!("cannot read {}: {e}", got.display()))?;
    same_bytes(&bytes, want)
}

/// `Ok` when `got == want`, else the lengths and the first differing offset.
pub(crate) fn same_bytes(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "content differs: got {} bytes, want {}; first difference at offset {first} \
         (block {} at 512 B, {} at 1468 B)",
        got.len(),
        want.len(),
        first / 512 + 1,
        first / 1468 + 1
    ))
}

/// A seed that differs between runs (time and PID).
pub(crate) fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) ^ u64::from(super::next_id())
}

/// `len` pseudo-random bytes from `seed` (splitmix64).
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Mebibytes, for readable messages.
pub(crate) struct MiB(pub(crate) usize);

impl fmt::Display for MiB {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MiB", self.0 as f64 / f64::from(1 << 20))
    }
}
