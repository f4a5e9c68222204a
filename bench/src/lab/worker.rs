//! The lab's work, on a thread inside the client namespace: control plane, registration,
//! enrolment, the boot rounds, the wait for `ACTIVE`, the comparison and the final tables.
//! Every child process it starts is owned here and stopped (by PID) when this returns.
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ims_proto::MacAddr;
use tokio::runtime::Runtime;

use super::compare::{self, ServerRun};
use super::control::{self, Rest};
use super::edge::{self, HTTP_PORT};
use super::machine::{self, Outcome, Plan, Until};
use super::netns::{self, CLIENT_IF, EDGE_IP};
use super::procs::Child;
use super::progress::{self, Phase, Progress, Row};
use super::pxe_dhcp::{ARCH_UEFI_X64, Dhcp};
use super::{LabConfig, LabError, Screen, boot_phases, machine_macs, qemu_lab};

/// The thread that polls for ACTIVE machines: when each MAC (lower-case) was first seen.
type ActiveWatcher = std::thread::JoinHandle<Result<BTreeMap<String, Instant>, LabError>>;

/// Everything the worker needs.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) config: LabConfig,
    pub(crate) dir: PathBuf,
    pub(crate) password: String,
    pub(crate) site_ns: String,
    pub(crate) edge_ns: String,
    pub(crate) client_ns: String,
    pub(crate) progress: Arc<Progress>,
    pub(crate) screen: Arc<Screen>,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl Job {
    fn check(&self) -> Result<(), LabError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(LabError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sleep up to `d`, returning early (with an error) when cancelled.
    fn pause(&self, d: Duration) -> Result<(), LabError> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check()?;
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
        self.check()
    }

    /// Run the lab (see the module docs).
    pub(crate) fn run(self) -> Result<(), LabError> {
        netns::enter(&self.client_ns)?;
        let ns = self.client_ns.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                let _ = netns::enter(&ns);
            })
            .build()
            .map_err(|e| LabError::Setup(format!("tokio runtime: {e}")))?;
        let cfg = &self.config;
        let qemu_count = cfg.qemu.as_ref().map_or(0, |q| q.count);
        let macs = machine_macs(cfg.machines - qemu_count, cfg.scatter_macs);
        let run_token = format!("ims-lab-{}", std::process::id());
        let root = self.dir.join("root");
        edge::write_root(&root, cfg.sizes)?;

        // Control plane, registration.
        let data = self.dir.join("control-data");
        let mut ctl = control::start(
            &cfg.ims_control,
            &self.site_ns,
            &data,
            &self.password,
            &self.dir,
        )?;
        let t = Instant::now();
        let mut rest = Rest::login(&self.password, Duration::from_secs(60), &self.cancel).map_err(
            |e| match e {
                LabError::Interrupted => e,
                _ => LabError::Setup(format!("{e}\n--- ims-control log:\n{}", ctl.log_tail(20))),
            },
        )?;
        self.screen.say(format!(
            "ims-control up in {:.1} s (pid {})",
            t.elapsed().as_secs_f64(),
            ctl.pid().unwrap_or(0)
        ));
        self.check()?;
        self.screen.bars(&[Phase::Register]);
        let t = Instant::now();
        rest.register(&macs, |_| self.progress.finish(Phase::Register, true))?;
        let qemu_ids = qemu_lab::register(&mut rest, qemu_count, &run_token, || {
            self.progress.finish(Phase::Register, true);
        })?;
        let register_time = t.elapsed();
        self.screen.say(format!(
            "registered site, pool, boot profile(s), cluster and {} machines in {:.1} s",
            macs.len() + qemu_ids.len(),
            register_time.as_secs_f64()
        ));

        // The edge: enrol, start, wait until it serves the last machine from the snapshot.
        let token = control::join_token(&cfg.ims_control, &data)?;
        let config = edge::enroll(&cfg.netbootd, &self.edge_ns, &self.dir, &root, &token)?;
        let mut netbootd = edge::start_netbootd(&cfg.netbootd, &self.edge_ns, &config, &self.dir)?;
        let t = Instant::now();
        let last = macs.last().copied().unwrap_or(qemu_lab::qemu_mac(0));
        self.wait_snapshot(&mut netbootd, last)?;
        self.screen.say(format!(
            "netbootd enrolled and serving the control plane's snapshot after {:.1} s (pid {})",
            t.elapsed().as_secs_f64(),
            netbootd.pid().unwrap_or(0)
        ));
        let _guard = rt.enter();
        let dhcp = Dhcp::open(CLIENT_IF, ARCH_UEFI_X64)
            .map_err(|e| LabError::Setup(format!("raw socket on {CLIENT_IF}: {e}")))?;
        let xid_base = std::process::id().wrapping_mul(0x9e37_79b9);

        let mut runs = Vec::new();
        if cfg.dnsmasq.is_some() {
            self.screen
                .say("boot storm 1/2: DHCP + TFTP through netbootd");
            runs.push(self.storm("netbootd", &rt, &dhcp, &macs, xid_base, &netbootd)?);
        }

        // The full boot, with ACTIVE watched over REST at the same time.
        self.progress.reset_boot();
        self.screen
            .say(format!("booting {} machines through netbootd", macs.len()));
        self.screen.bars(&boot_phases());
        let watch_stop = Arc::new(AtomicBool::new(false));
        let watcher = self.watch_active(Arc::clone(&watch_stop))?;
        let start = Instant::now();
        let mut fleet = match &cfg.qemu {
            Some(q) => {
                let dir = self.dir.join("qemu");
                let fleet = qemu_lab::Fleet::start(
                    &self.site_ns,
                    "br0",
                    &qemu_ids,
                    q.accel,
                    &dir,
                    &run_token,
                )?;
                self.screen.say(format!(
                    "{} QEMU machine(s) booting ({}, SeaBIOS + iPXE ROM; pids {:?}); serial consoles: {}/qemu-*.serial.log",
                    qemu_ids.len(),
                    q.accel.name(),
                    fleet.pids(),
                    dir.display()
                ));
                Some(fleet)
            }
            None => None,
        };
        let deadline = start + cfg.max_time;
        let (outcomes, qemu_outcomes) = std::thread::scope(|scope| {
            let qemu = fleet.as_mut().map(|f| {
                scope.spawn(|| f.watch(&self.password, &self.progress, deadline, &self.cancel))
            });
            let outcomes = self.round(
                &rt,
                &dhcp,
                &macs,
                xid_base.wrapping_add(1 << 20),
                Until::PhoneHome,
            );
            let qemu_outcomes = qemu
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default();
            (outcomes, qemu_outcomes)
        });
        let outcomes = outcomes.map(|mut o| {
            o.extend(qemu_outcomes);
            o
        });
        let phoned = outcomes
            .as_ref()
            .map(|o| o.iter().filter(|o| o.phoned_at.is_some()).count())
            .unwrap_or(0);
        // Wait (bounded) for every phoned-home machine to show ACTIVE.
        let wait_end = Instant::now() + self.config.max_time;
        while outcomes.is_ok()
            && self.progress.get(Phase::Active).0 < phoned as u64
            && Instant::now() < wait_end
            && !self.cancel.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        watch_stop.store(true, Ordering::Relaxed);
        let active = watcher
            .join()
            .unwrap_or_else(|_| Err(LabError::Control("the ACTIVE watcher panicked".to_owned())))?;
        let outcomes = outcomes?;
        let total = start.elapsed();
        self.screen.bars(&[]);
        let (table, reached) = boot_table(&outcomes, &active, total);
        self.screen.say(table);
        if let Some(slowest) = to_active(&outcomes, &active).into_iter().max()
            && slowest > SLOW_ACTIVE
        {
            // Evidence for a slow uplink or control plane (refusals, reconnects, store errors).
            for (name, child) in [("ims-control", &ctl), ("netbootd", &netbootd)] {
                let log = std::fs::read_to_string(&child.log).unwrap_or_default();
                let lines = warnings(&log, 10);
                if !lines.is_empty() {
                    self.screen.say(format!(
                        "slowest phone-home → ACTIVE {:.1} s; {name} warnings ({}):\n{}",
                        slowest.as_secs_f64(),
                        child.log.display(),
                        lines.join("\n")
                    ));
                }
            }
        }

        if let Some(dnsmasq) = &cfg.dnsmasq {
            netbootd.stop(Duration::from_secs(10));
            self.screen
                .say("boot storm 2/2: DHCP + TFTP through dnsmasq (netbootd stopped)");
            let mut server = edge::start_dnsmasq(dnsmasq, &self.edge_ns, &self.dir, &root, &macs)?;
            self.pause(Duration::from_millis(500))?;
            if let Some(status) = server.exited() {
                return Err(LabError::Setup(format!(
                    "dnsmasq exited at start ({status}):\n{}",
                    server.log_tail(10)
                )));
            }
            runs.push(self.storm(
                "dnsmasq",
                &rt,
                &dhcp,
                &macs,
                xid_base.wrapping_add(2 << 20),
                &server,
            )?);
            server.stop(Duration::from_secs(5));
            self.screen.say(format!(
                "boot storm, {} machines, boot file {} KiB, blksize {}, windowsize {}:\n{}",
                macs.len(),
                cfg.sizes.boot_file / 1024,
                cfg.blksize,
                cfg.windowsize,
                compare::table(&runs)
            ));
        }

        if cfg.keep {
            self.screen
                .say("--keep: the site stays up; press Ctrl-C to tear it down");
            while !self.cancel.load(Ordering::Relaxed) {
                if let Some(status) = ctl.exited() {
                    return Err(LabError::Setup(format!("ims-control exited ({status})")));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        netbootd.stop(Duration::from_secs(10));
        ctl.stop(Duration::from_secs(10));
        let storms_ok = runs.iter().all(|r| r.ok == r.machines);
        if reached < macs.len() || !storms_ok {
            return Err(LabError::Incomplete(format!(
                "{reached} of {} machines reached ACTIVE{}",
                macs.len(),
                if storms_ok {
                    ""
                } else {
                    "; a boot storm left machines without their boot file"
                }
            )));
        }
        Ok(())
    }

    /// Wait (at most 60 s) until netbootd serves `mac`'s iPXE script with a kernel.
    fn wait_snapshot(&self, netbootd: &mut Child, mac: MacAddr) -> Result<(), LabError> {
        let end = Instant::now() + Duration::from_secs(60);
        let addr = std::net::SocketAddr::from((EDGE_IP, HTTP_PORT));
        let path = format!("/boot.ipxe?mac={mac}");
        loop {
            self.check()?;
            if let Some(status) = netbootd.exited() {
                return Err(LabError::Setup(format!(
                    "netbootd exited ({status}):\n{}",
                    netbootd.log_tail(20)
                )));
            }
            let served = crate::api_bench::http::Conn::new(addr).request("GET", &path, None, None);
            if let Ok(r) = served
                && r.status == 200
                && String::from_utf8_lossy(&r.body).contains("kernel ")
            {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(LabError::Timeout(format!(
                    "netbootd did not serve {mac}'s boot script from the control plane within 60 s:\n{}",
                    netbootd.log_tail(20)
                )));
            }
            self.pause(Duration::from_millis(250))?;
        }
    }

    /// Boot every machine at once as far as `until`; bounded by `max_time`.
    fn round(
        &self,
        rt: &Runtime,
        dhcp: &Arc<Dhcp>,
        macs: &[MacAddr],
        xid_base: u32,
        until: Until,
    ) -> Result<Vec<Outcome>, LabError> {
        let plan = Arc::new(Plan {
            blksize: self.config.blksize,
            windowsize: self.config.windowsize,
            http_port: HTTP_PORT,
            until,
            deadline: Instant::now() + self.config.max_time,
        });
        let cancel = Arc::clone(&self.cancel);
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (i, mac) in macs.iter().enumerate() {
                set.spawn(machine::boot(
                    Arc::clone(dhcp),
                    *mac,
                    xid_base.wrapping_add(i as u32),
                    Arc::clone(&plan),
                    Arc::clone(&self.progress),
                ));
            }
            let collect = async {
                let mut all = Vec::with_capacity(macs.len());
                while let Some(r) = set.join_next().await {
                    if let Ok(o) = r {
                        all.push(o);
                    }
                }
                all
            };
            let cancelled = async {
                while !cancel.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                all = collect => Ok(all),
                () = cancelled => Err(LabError::Interrupted),
            }
        })
    }

    /// One DHCP + TFTP storm against `server`, with its CPU time and peak RSS.
    fn storm(
        &self,
        name: &str,
        rt: &Runtime,
        dhcp: &Arc<Dhcp>,
        macs: &[MacAddr],
        xid_base: u32,
        server: &Child,
    ) -> Result<ServerRun, LabError> {
        self.progress.reset_boot();
        self.screen.bars(&[Phase::Dhcp, Phase::Tftp]);
        let before = server.usage();
        dhcp.take_naks();
        let start = Instant::now();
        let outcomes = self.round(rt, dhcp, macs, xid_base, Until::BootFile)?;
        let all_done = start.elapsed();
        let after = server.usage();
        self.screen.bars(&[]);
        let mut run = ServerRun::new(name, &outcomes, all_done, before, after);
        run.naks = dhcp.take_naks();
        self.screen.say(format!(
            "  {name}: {}/{} machines have their boot file after {:.2} s",
            run.ok,
            run.machines,
            all_done.as_secs_f64()
        ));
        for (e, count) in failures(&outcomes) {
            self.screen.say(format!("  {name}: failure ×{count}: {e}"));
        }
        Ok(run)
    }

    /// A thread polling the REST API for ACTIVE machines until `stop`: when each MAC was first
    /// seen ACTIVE.
    fn watch_active(&self, stop: Arc<AtomicBool>) -> Result<ActiveWatcher, LabError> {
        let password = self.password.clone();
        let progress = Arc::clone(&self.progress);
        let total = self.config.machines;
        std::thread::Builder::new()
            .name("ims-lab-active".to_owned())
            .spawn(move || {
                let mut rest = Rest::login(&password, Duration::from_secs(10), &stop)?;
                let mut seen = BTreeMap::new();
                let mut last_poll: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) && seen.len() < total {
                    let phoned = progress.get(Phase::PhoneHome).0;
                    if should_poll(phoned, seen.len(), last_poll.map(|t| t.elapsed())) {
                        let now = Instant::now();
                        last_poll = Some(now);
                        for mac in rest.active_macs()? {
                            seen.entry(mac).or_insert(now);
                        }
                        progress.set_done(Phase::Active, seen.len() as u64);
                    }
                    std::thread::sleep(POLL_WAITING);
                }
                Ok(seen)
            })
            .map_err(|e| LabError::Setup(format!("cannot start a thread: {e}")))
    }
}

/// Longest pause of the ACTIVE watcher between polls.
const POLL_IDLE: Duration = Duration::from_millis(250);
/// How often the watcher looks whether a machine phoned home (and then polls at once): the
/// phone-home → ACTIVE figure is late by at most about this much.
const POLL_WAITING: Duration = Duration::from_millis(25);

/// Whether the ACTIVE watcher polls the REST API now, given how many machines phoned home, how
/// many it has seen `ACTIVE` and the time since its last poll (`None`: never polled): at once
/// while some phoned home and are not seen yet, otherwise every [`POLL_IDLE`].
fn should_poll(phoned: u64, seen: usize, since_last: Option<Duration>) -> bool {
    phoned > seen as u64 || since_last.is_none_or(|d| d >= POLL_IDLE)
}

/// The final table of a full boot.
fn boot_table(
    outcomes: &[Outcome],
    active: &BTreeMap<String, Instant>,
    total: Duration,
) -> (String, usize) {
    let n = outcomes.len();
    let mut rows = Vec::new();
    for (i, label) in ["DHCP", "TFTP", "HTTP", "phone-home"]
        .into_iter()
        .enumerate()
    {
        let ok: Vec<Duration> = outcomes
            .iter()
            .filter_map(|o| phase_results(o)[i]?.as_ref().ok().copied())
            .collect();
        // A QEMU machine's phase it does not go through (TFTP) is not a failure.
        let applicable = outcomes
            .iter()
            .filter(|o| !o.qemu || phase_results(o)[i].is_some() || i != 1)
            .count();
        rows.push(Row::new(label, &ok, applicable - ok.len()));
    }
    let to_active = to_active(outcomes, active);
    rows.push(Row::new("ACTIVE", &to_active, n - to_active.len()));
    let mut text = format!(
        "boot of {n} machines: {}/{n} ACTIVE after {:.1} s\n",
        to_active.len(),
        total.as_secs_f64()
    );
    text.push_str(&progress::table(&rows));
    let qemu: Vec<&Outcome> = outcomes.iter().filter(|o| o.qemu).collect();
    if !qemu.is_empty() {
        let ms = |r: Option<&Result<Duration, String>>| match r {
            Some(Ok(d)) => format!("{:.1} s", d.as_secs_f64()),
            Some(Err(_)) => "failed".to_owned(),
            None => "—".to_owned(),
        };
        text.push_str(&format!(
            "  of which {} real QEMU machine(s) (timeline over REST; no TFTP: the iPXE ROM \
             fetches its script over HTTP):\n",
            qemu.len()
        ));
        for o in qemu {
            let mac = o.mac.map(|m| m.to_string()).unwrap_or_default();
            let active = o.mac.and_then(|m| {
                let at = active.get(&m.to_string().to_ascii_lowercase())?;
                Some(at.saturating_duration_since(o.phoned_at?))
            });
            text.push_str(&format!(
                "    {mac}: DHCP {} (from power-on), TFTP —, HTTP {}, phone-home {}, ACTIVE {}\n",
                ms(o.dhcp.as_ref()),
                ms(o.http.as_ref()),
                ms(o.phone_home.as_ref()),
                active.map_or_else(|| "—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
            ));
        }
    }
    for (e, count) in failures(outcomes) {
        text.push_str(&format!("  failure ×{count}: {e}\n"));
    }
    (text, to_active.len())
}

/// Each machine's time from its phone-home to the first poll that showed it `ACTIVE`.
fn to_active(outcomes: &[Outcome], active: &BTreeMap<String, Instant>) -> Vec<Duration> {
    outcomes
        .iter()
        .filter_map(|o| {
            let mac = o.mac?.to_string().to_ascii_lowercase();
            Some(active.get(&mac)?.saturating_duration_since(o.phoned_at?))
        })
        .collect()
}

/// A phone-home → ACTIVE slower than this gets the servers' warnings printed under the table.
const SLOW_ACTIVE: Duration = Duration::from_secs(1);

/// The `WARN` and `ERROR` lines of a server's log, at most `max` (the last ones).
fn warnings(log: &str, max: usize) -> Vec<&str> {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    lines[lines.len().saturating_sub(max)..].to_vec()
}

/// A machine's results of DHCP, TFTP, HTTP and phone-home.
fn phase_results(o: &Outcome) -> [Option<&Result<Duration, String>>; 4] {
    [
        o.dhcp.as_ref(),
        o.tftp.as_ref(),
        o.http.as_ref(),
        o.phone_home.as_ref(),
    ]
}

/// The distinct failures of `outcomes` with their counts (at most 5 kinds).
fn failures(outcomes: &[Outcome]) -> Vec<(String, usize)> {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        for r in phase_results(o).into_iter().flatten() {
            if let Err(e) = r {
                *errors.entry(e.clone()).or_default() += 1;
            }
        }
    }
    errors.into_iter().take(5).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_polls_at_once_while_a_phoned_home_machine_is_not_seen_active() {
        let ms = Duration::from_millis;
        assert!(should_poll(0, 0, None), "the first poll");
        assert!(
            !should_poll(0, 0, Some(ms(30))),
            "nobody phoned home: idle pace"
        );
        assert!(should_poll(0, 0, Some(POLL_IDLE)), "idle pace reached");
        assert!(
            should_poll(3, 1, Some(ms(1))),
            "two wait to be seen: poll now"
        );
        assert!(!should_poll(3, 3, Some(ms(100))), "all seen: idle pace");
        assert!(POLL_WAITING <= ms(50));
    }

    #[test]
    fn warnings_are_the_last_warn_and_error_lines() {
        let log = "t INFO a\nt  WARN netbootd: one\nt INFO b\nt ERROR x: two\nt  WARN y: three\n";
        assert_eq!(warnings(log, 2), vec!["t ERROR x: two", "t  WARN y: three"]);
        assert_eq!(warnings(log, 10).len(), 3);
        assert!(warnings("t INFO only\n", 10).is_empty());
    }
}
