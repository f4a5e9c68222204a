//! A throw-away test LAN in network namespaces, and the daemon under test running in it.
//!
//! Direct site ([`Site::new`]):
//!
//! ```text
//!   netns <id>-srv                         netns <id>-cli
//!   [srv0 10.77.0.1/24] ----- veth ------- [cli0  (no address; DHCP clients)]
//!   netbootd, metrics on 127.0.0.1:9464
//! ```
//!
//! Relayed site ([`Site::new_relayed`]):
//!
//! ```text
//!   netns <id>-srv              netns <id>-rly                          netns <id>-cli
//!   [srv0 10.77.0.1/24] --- [rly0 10.77.0.2/24]  dhcrelay  [rly1 10.88.0.1/24] --- [cli0]
//!   route 10.88.0.0/24 via 10.77.0.2
//! ```
//!
//! Interface names are local to their namespace, so every site uses the same ones; namespace
//! names carry the test's tag, the PID and a counter, so tests can run in parallel.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::observe::{LeaseView, collect_leases, metric_value};
use super::{
    Outcome, TempDir, command_line, netns, next_id, require_root, run, tail, tool, wait_child,
    wait_until,
};

/// The daemon under test.
pub(crate) const NETBOOTD: &str = env!("CARGO_BIN_EXE_netbootd");
/// Server-side interface (in the server namespace).
pub(crate) const SERVER_IF: &str = "srv0";
/// Client-side interface (in the client namespace).
pub(crate) const CLIENT_IF: &str = "cli0";
/// The server's address on `srv0`.
pub(crate) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Relay: interface towards the server, and its address.
pub(crate) const RELAY_UP_IF: &str = "rly0";
/// Relay's address towards the server.
pub(crate) const RELAY_UP_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Relay: interface towards the clients.
pub(crate) const RELAY_DOWN_IF: &str = "rly1";
/// Relay's address on the client subnet (the `giaddr`).
pub(crate) const RELAY_DOWN_IP: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// Where netbootd serves `/metrics`, `/healthz` and `/readyz`, inside the server namespace.
pub(crate) const METRICS_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464);
/// The client interface's MAC before a test sets its own.
pub(crate) const DEFAULT_CLIENT_MAC: &str = "02:77:00:00:00:02";

/// How long commands that should be instant may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long netbootd may take to answer `/readyz` with 200 after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long netbootd may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running netbootd.
#[derive(Debug)]
struct Daemon {
    child: Child,
}

/// A helper process started in the background (dhcrelay, dhclient).
#[derive(Debug)]
struct Background {
    label: String,
    child: Child,
    log: PathBuf,
}

/// Handle of a background process started with [`Site::spawn_background`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BgId(usize);

/// A test LAN; see the module docs. Everything it started is stopped on drop.
#[derive(Debug)]
pub(crate) struct Site {
    /// Short name of the test, for messages.
    pub(crate) tag: String,
    /// Namespace holding netbootd and `srv0`.
    pub(crate) server_ns: String,
    /// Namespace holding `cli0` and the DHCP clients.
    pub(crate) client_ns: String,
    /// Namespace holding the relay (relayed sites only).
    pub(crate) relay_ns: Option<String>,
    namespaces: Vec<String>,
    etc_dirs: Vec<PathBuf>,
    daemon: Option<Daemon>,
    config_text: Option<String>,
    /// Extra environment for netbootd (set with [`Site::set_daemon_env`]).
    daemon_env: Vec<(String, String)>,
    starts: u32,
    background: Vec<Background>,
    /// Dropped last (after `Drop::drop` stopped everything): keeps logs if the test failed.
    dir: TempDir,
}

impl Site {
    /// A server and a client namespace joined by one veth pair.
    pub(crate) fn new(tag: &str) -> Self {
        Self::create(tag, false)
    }

    /// Server, relay and client namespaces: the client reaches the server only through a relay
    /// (start it with [`Site::start_dhcrelay`]).
    pub(crate) fn new_relayed(tag: &str) -> Self {
        Self::create(tag, true)
    }

    fn create(tag: &str, relayed: bool) -> Self {
        require_root();
        let short: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let id = format!("nbt-{short}-{}-{}", std::process::id(), next_id());
        let mut site = Self {
            tag: tag.to_owned(),
            server_ns: format!("{id}-srv"),
            client_ns: format!("{id}-cli"),
            relay_ns: relayed.then(|| format!("{id}-rly")),
            namespaces: Vec::new(),
            etc_dirs: Vec::new(),
            daemon: None,
            config_text: None,
            daemon_env: Vec::new(),
            starts: 0,
            background: Vec::new(),
            dir: TempDir::new(&id),
        };
        // From here on, a panic drops `site`, which removes whatever was already created.
        let (srv, cli) = (site.server_ns.clone(), site.client_ns.clone());
        let mut all = vec![srv.clone()];
        all.extend(site.relay_ns.clone());
        all.push(cli.clone());
        for ns in &all {
            ip(&["netns", "add", ns]);
            site.namespaces.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc: DHCP clients in our namespaces
        // see an empty resolv.conf of their own, never the host's.
        for ns in &all {
            let etc = PathBuf::from("/etc/netns").join(ns);
            std::fs::create_dir_all(&etc)
                .unwrap_or_else(|e| panic!("create {}: {e}", etc.display()));
            site.etc_dirs.push(etc.clone());
            std::fs::write(etc.join("resolv.conf"), "")
                .unwrap_or_else(|e| panic!("write {}/resolv.conf: {e}", etc.display()));
        }
        match site.relay_ns.clone() {
            None => {
                ip(&[
                    "-n", &srv, "link", "add", SERVER_IF, "type", "veth", "peer", "name",
                    CLIENT_IF, "netns", &cli,
                ]);
            }
            Some(rly) => {
                ip(&[
                    "-n",
                    &srv,
                    "link",
                    "add",
                    SERVER_IF,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    RELAY_UP_IF,
                    "netns",
                    &rly,
                ]);
                ip(&[
                    "-n",
                    &rly,
                    "link",
                    "add",
                    RELAY_DOWN_IF,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    CLIENT_IF,
                    "netns",
                    &cli,
                ]);
                ip(&[
                    "-n",
                    &rly,
                    "addr",
                    "add",
                    &format!("{RELAY_UP_IP}/24"),
                    "dev",
                    RELAY_UP_IF,
                ]);
                ip(&[
                    "-n",
                    &rly,
                    "addr",
                    "add",
                    &format!("{RELAY_DOWN_IP}/24"),
                    "dev",
                    RELAY_DOWN_IF,
                ]);
                ip(&["-n", &rly, "link", "set", RELAY_UP_IF, "up"]);
                ip(&["-n", &rly, "link", "set", RELAY_DOWN_IF, "up"]);
                disable_rp_filter(&rly, &[RELAY_UP_IF, RELAY_DOWN_IF]);
            }
        }
        ip(&[
            "-n",
            &srv,
            "link",
            "set",
            SERVER_IF,
            "address",
            "02:77:00:00:00:01",
        ]);
        ip(&[
            "-n",
            &srv,
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            SERVER_IF,
        ]);
        ip(&["-n", &srv, "link", "set", SERVER_IF, "up"]);
        if site.relay_ns.is_some() {
            ip(&[
                "-n",
                &srv,
                "route",
                "add",
                "10.88.0.0/24",
                "via",
                &RELAY_UP_IP.to_string(),
                "dev",
                SERVER_IF,
            ]);
        }
        ip(&[
            "-n",
            &cli,
            "link",
            "set",
            CLIENT_IF,
            "address",
            DEFAULT_CLIENT_MAC,
        ]);
        ip(&["-n", &cli, "link", "set", CLIENT_IF, "up"]);
        // Replies come from addresses the client namespace has no route to.
        disable_rp_filter(&cli, &[CLIENT_IF]);
        wait_link_up(&srv, SERVER_IF);
        wait_link_up(&cli, CLIENT_IF);
        site
    }

    /// The site's temp directory (config, data dir, logs, hook outputs).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's LMDB directory (the same across restarts).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The config file netbootd runs with.
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir().join("netbootd.toml")
    }

    /// Write the config (`body` plus the site's `data_dir` and `metrics_listen`), start netbootd in
    /// the server namespace and wait (bounded) until `/readyz` answers 200: every service the
    /// config enables (DHCP raw sockets, TFTP, HTTP) has its sockets open and serves.
    pub(crate) fn start_netbootd(&mut self, body: &str) {
        let data_dir = self.data_dir();
        let text = format!(
            "# written by the netns test harness for {}\ndata_dir = \"{}\"\nmetrics_listen = \"{METRICS_ADDR}\"\n\n{body}",
            self.tag,
            data_dir.display()
        );
        std::fs::write(self.config_path(), &text).expect("write config");
        self.config_text = Some(text);
        self.spawn_netbootd();
    }

    /// Set an environment variable for netbootd's next start (such as `NETBOOTD_TFTP_DRIVER`).
    pub(crate) fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.daemon_env.retain(|(k, _)| k != key);
        self.daemon_env.push((key.to_owned(), value.to_owned()));
    }

    /// Stop netbootd (SIGTERM) and start it again with the same config and data dir.
    pub(crate) fn restart_netbootd(&mut self) {
        let status = self.stop_netbootd();
        assert!(
            status.is_some(),
            "netbootd did not exit within {STOP_TIMEOUT:?} of SIGTERM"
        );
        self.spawn_netbootd();
    }

    fn spawn_netbootd(&mut self) {
        assert!(self.daemon.is_none(), "netbootd is already running");
        assert!(self.config_text.is_some(), "start_netbootd first");
        self.starts += 1;
        let log = self.dir().join(format!("netbootd-{}.log", self.starts));
        let out = File::create(&log).expect("create netbootd log");
        let err = out.try_clone().expect("clone log handle");
        let config = self.config_path();
        let mut cmd = Command::new(tool("ip"));
        // `ip netns exec` execs the program: the child's PID is netbootd's own.
        cmd.args(["netns", "exec", &self.server_ns, NETBOOTD, "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,ims_netboot=debug,netbootd=debug")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .envs(
                self.daemon_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let line = command_line(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        eprintln!(
            "[harness {}] started netbootd pid {} (log {})",
            self.tag,
            child.id(),
            log.display()
        );
        self.daemon = Some(Daemon { child });
        let ns = self.server_ns.clone();
        let mut last = String::new();
        let ready = wait_until(START_TIMEOUT, || {
            if let Some(status) = self.daemon_exit_status() {
                panic!(
                    "netbootd exited during start-up with {status}:\n{}",
                    self.daemon_log()
                );
            }
            match netns::http_get(
                &ns,
                SocketAddr::V4(METRICS_ADDR),
                "/readyz",
                Duration::from_secs(1),
            ) {
                Ok((200, _)) => Some(()),
                Ok((code, body)) => {
                    last = format!("HTTP {code}: {body}");
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        assert!(
            ready.is_some(),
            "netbootd did not answer GET /readyz with 200 on {METRICS_ADDR} within {START_TIMEOUT:?} (last: {last})\n{}",
            self.daemon_log()
        );
    }

    /// The exit status if netbootd has exited (it is then reaped), `None` while it runs.
    fn daemon_exit_status(&mut self) -> Option<ExitStatus> {
        self.daemon
            .as_mut()
            .and_then(|d| d.child.try_wait().ok().flatten())
    }

    /// The PID of the running netbootd, if one was started.
    pub(crate) fn netbootd_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.child.id())
    }

    /// Whether netbootd is still running.
    pub(crate) fn netbootd_alive(&mut self) -> bool {
        self.daemon.is_some() && self.daemon_exit_status().is_none()
    }

    /// The current (or last) netbootd log, tail.
    pub(crate) fn daemon_log(&self) -> String {
        let log = self.dir().join(format!("netbootd-{}.log", self.starts));
        format!("--- {}\n{}", log.display(), tail(&log, 150))
    }

    /// SIGTERM netbootd and wait (bounded); SIGKILL if it does not exit. Returns its exit status,
    /// `None` if it had to be killed.
    pub(crate) fn stop_netbootd(&mut self) -> Option<ExitStatus> {
        let mut d = self.daemon.take().expect("netbootd is not running");
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!(
                "netbootd had already exited with {status}:\n{}",
                self.daemon_log()
            );
        }
        signal(&d.child, Signal::SIGTERM);
        let status = wait_child(&mut d.child, STOP_TIMEOUT);
        if status.is_none() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
        status
    }

    /// SIGKILL netbootd (a crash, as far as the daemon can tell) and reap it.
    pub(crate) fn kill_netbootd(&mut self) {
        let mut d = self.daemon.take().expect("netbootd is not running");
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!(
                "netbootd had already exited with {status}:\n{}",
                self.daemon_log()
            );
        }
        let _ = d.child.kill();
        let _ = d.child.wait();
    }

    /// Start netbootd again after [`Self::stop_netbootd`] / [`Self::kill_netbootd`].
    pub(crate) fn start_again(&mut self) {
        self.spawn_netbootd();
    }

    /// GET `path` from netbootd's metrics listener: `(status, body)`.
    pub(crate) fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        netns::http_get(
            &self.server_ns,
            SocketAddr::V4(METRICS_ADDR),
            path,
            Duration::from_secs(3),
        )
    }

    /// The Prometheus text from `/metrics`.
    pub(crate) fn metrics(&self) -> String {
        match self.http_get("/metrics") {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!("GET /metrics: HTTP {code}: {body}\n{}", self.daemon_log()),
            Err(e) => panic!("GET /metrics: {e}\n{}", self.daemon_log()),
        }
    }

    /// The non-zero `netbootd_*` samples, or why they could not be read (never panics): for
    /// failure messages.
    pub(crate) fn metrics_summary(&self) -> String {
        match self.http_get("/metrics") {
            Ok((200, body)) => {
                let lines: Vec<&str> = body
                    .lines()
                    .filter(|l| l.starts_with("netbootd_") && !l.ends_with(" 0"))
                    .collect();
                format!("--- non-zero metrics\n{}", lines.join("\n"))
            }
            Ok((code, _)) => format!("--- metrics: HTTP {code}"),
            Err(e) => format!("--- metrics: {e}"),
        }
    }

    /// The sum of all series of metric `name` whose labels include `labels` (0 if none).
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Wait (bounded) until metric `name{labels}` satisfies `pred`; panic with the metrics
    /// page otherwise. Returns the value seen.
    #[track_caller]
    pub(crate) fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        what: &str,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let mut page = String::new();
        let found = wait_until(Duration::from_secs(10), || {
            page = self.metrics();
            let v = metric_value(&page, name, labels);
            pred(v).then_some(v)
        });
        match found {
            Some(v) => v,
            None => panic!(
                "metric {name}{labels:?} never became {what} within 10 s (now {}).\n--- /metrics\n{page}\n{}",
                metric_value(&page, name, labels),
                self.daemon_log()
            ),
        }
    }

    /// `netbootd leases --config FILE --json`, parsed.
    pub(crate) fn leases(&self) -> Vec<LeaseView> {
        let out = run(
            Command::new(NETBOOTD)
                .arg("leases")
                .arg("--config")
                .arg(self.config_path())
                .arg("--json"),
            CMD_TIMEOUT,
        );
        assert!(out.success(), "netbootd leases failed:\n{out}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("netbootd leases --json printed invalid JSON ({e}):\n{out}")
        });
        let mut found = Vec::new();
        collect_leases(&json, &mut found);
        found
    }

    /// The lease listed for `ip`, if any.
    pub(crate) fn lease(&self, ip: &str) -> Option<LeaseView> {
        self.leases().into_iter().find(|l| l.ip == ip)
    }

    /// Wait (bounded) until the listing shows `ip` leased to `mac` in `state`; returns it.
    #[track_caller]
    pub(crate) fn wait_lease(&self, ip: &str, mac: &str, state: &str) -> LeaseView {
        let mut last = Vec::new();
        let found = wait_until(Duration::from_secs(10), || {
            last = self.leases();
            last.iter()
                .find(|l| l.ip == ip && l.mac == mac.to_ascii_lowercase() && l.state == state)
                .cloned()
        });
        found.unwrap_or_else(|| {
            let listing: Vec<String> = last.iter().map(|l| l.raw.to_string()).collect();
            panic!(
                "no lease {ip} / {mac} in state {state:?} within 10 s; `netbootd leases --json` lists:\n{}\n{}\n{}",
                listing.join("\n"),
                self.metrics_summary(),
                self.daemon_log()
            )
        })
    }

    /// Set `cli0`'s MAC (the client "machine" it represents).
    pub(crate) fn set_client_mac(&self, mac: &str) {
        ip(&[
            "-n",
            &self.client_ns,
            "link",
            "set",
            CLIENT_IF,
            "address",
            mac,
        ]);
    }

    /// Set the MTU of the server-client link (direct sites: `srv0` and `cli0`).
    pub(crate) fn set_mtu(&self, mtu: u32) {
        assert!(self.relay_ns.is_none(), "set_mtu is for direct sites");
        let mtu = mtu.to_string();
        ip(&["-n", &self.server_ns, "link", "set", SERVER_IF, "mtu", &mtu]);
        ip(&["-n", &self.client_ns, "link", "set", CLIENT_IF, "mtu", &mtu]);
    }

    /// Remove every address from `cli0`.
    pub(crate) fn flush_client(&self) {
        ip(&["-n", &self.client_ns, "addr", "flush", "dev", CLIENT_IF]);
    }

    /// `cli0`'s IPv4 addresses, as `a.b.c.d/len`.
    pub(crate) fn client_addrs(&self) -> Vec<String> {
        let out = run(
            Command::new(tool("ip")).args([
                "-n",
                &self.client_ns,
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                CLIENT_IF,
            ]),
            CMD_TIMEOUT,
        )
        .check();
        out.stdout
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|t| t == "inet")?;
                w.next().map(str::to_owned)
            })
            .collect()
    }

    /// Run a command in namespace `ns` to completion (bounded by `timeout`).
    pub(crate) fn run_in(&self, ns: &str, argv: &[&str], timeout: Duration) -> Outcome {
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", ns]).args(argv);
        run(&mut cmd, timeout)
    }

    /// Start a helper in namespace `ns` in the background, its output to `<dir>/<label>.log`.
    /// It is killed (by PID) when the site is dropped.
    pub(crate) fn spawn_background(&mut self, label: &str, ns: &str, argv: &[&str]) -> BgId {
        let log = self.dir().join(format!("{label}.log"));
        let out = File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let line = command_line(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e} (is it installed?)"));
        self.background.push(Background {
            label: label.to_owned(),
            child,
            log,
        });
        BgId(self.background.len() - 1)
    }

    /// The exit status of a background helper if it has exited (waiting at most `timeout`).
    pub(crate) fn wait_background(&mut self, id: BgId, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.background[id.0].child, timeout)
    }

    /// A background helper's output so far.
    pub(crate) fn background_log(&self, id: BgId) -> String {
        let b = &self.background[id.0];
        format!(
            "--- {} ({})\n{}",
            b.label,
            b.log.display(),
            tail(&b.log, 100)
        )
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if let Some(mut d) = self.daemon.take() {
            if let Ok(None) = d.child.try_wait() {
                signal(&d.child, Signal::SIGTERM);
                if wait_child(&mut d.child, Duration::from_secs(5)).is_none() {
                    let _ = d.child.kill();
                    let _ = d.child.wait();
                }
            }
        }
        for b in &mut self.background {
            if let Ok(None) = b.child.try_wait() {
                let _ = b.child.kill();
                let _ = b.child.wait();
            }
        }
        if failing {
            eprintln!("[harness {}] test failed; logs follow", self.tag);
            if let Ok(entries) = std::fs::read_dir(self.dir()) {
                let mut logs: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "toml"))
                    .collect();
                logs.sort();
                for p in logs {
                    eprintln!("--- {}\n{}", p.display(), tail(&p, 150));
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let out = run(
                Command::new(tool("ip")).args(["netns", "del", ns]),
                CMD_TIMEOUT,
            );
            if !out.success() {
                eprintln!("[harness] could not delete namespace {ns}:\n{out}");
            }
        }
        for d in &self.etc_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Run `ip` with `args`; panic with its output if it fails.
#[track_caller]
pub(crate) fn ip(args: &[&str]) {
    run(Command::new(tool("ip")).args(args), CMD_TIMEOUT).check();
}

/// Send `sig` to a child we started, by PID.
fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Turn reverse-path filtering off in `ns` (replies come from off-link sources there).
fn disable_rp_filter(ns: &str, ifaces: &[&str]) {
    let mut keys = vec!["all".to_owned(), "default".to_owned()];
    keys.extend(ifaces.iter().map(|s| (*s).to_owned()));
    let ns_name = ns.to_owned();
    let failed: Vec<String> = netns::run_in(ns, move || {
        keys.iter()
            .filter_map(|k| {
                let p = format!("/proc/sys/net/ipv4/conf/{k}/rp_filter");
                std::fs::write(&p, "0").err().map(|e| format!("{p}: {e}"))
            })
            .collect()
    });
    assert!(
        failed.is_empty(),
        "cannot disable rp_filter in {ns_name}: {failed:?}"
    );
}

/// Wait (bounded) until `ifname` in `ns` is operationally UP, not only carrying (`LOWER_UP`).
///
/// A veth end transmits only once the kernel's link watcher has switched its transmit queues
/// from the `noop` qdisc, which drops every frame silently; the carrier flag is set before
/// that, the operational state in the same step. The watcher runs from a workqueue under the
/// RTNL lock, so on a loaded machine, or while other tests create and delete namespaces, it
/// lags behind `ip link set up` and a client's first requests (or the server's first answers)
/// would vanish.
fn wait_link_up(ns: &str, ifname: &str) {
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(10), || {
        let out = run(
            Command::new(tool("ip")).args(["-n", ns, "-o", "link", "show", "dev", ifname]),
            CMD_TIMEOUT,
        );
        last = out.stdout;
        (last.contains("LOWER_UP") && last.contains(" state UP ")).then_some(())
    });
    assert!(
        up.is_some(),
        "{ifname} in {ns} is not operationally UP after 10 s: {last}"
    );
}
