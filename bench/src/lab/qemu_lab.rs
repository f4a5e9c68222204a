//! `ims-lab --qemu K`: K of the lab's machines are real QEMU machines (SeaBIOS + the virtio
//! NIC's iPXE ROM, see [`super::qemu`]) on taps in the site's bridge, booting the same way as
//! the real-firmware e2e test: DHCP → the machine's iPXE script → a Debian kernel and a busybox
//! initramfs over HTTP → the initramfs phones home → `ACTIVE` in the REST API.
//!
//! - [`prepare`] (before the site exists, so `apt-get download` reaches the mirror): checks the
//!   prerequisites, fetches the payload into the cache and writes `qemu-vmlinuz` and
//!   `qemu-initrd.img` into the edge's boot root.
//! - [`register`]: a second boot profile (`lab-qemu`: iPXE script URL, the real kernel, a
//!   command line with the run's token) and the K machines, each with a fixed address in
//!   10.77.1.0/24 (outside the dynamic range, which the simulated machines' namespace answers
//!   ARP for).
//! - [`Fleet`]: the taps, an IPv6 router advertiser on the bridge (iPXE otherwise waits ≈ 13 s
//!   for one) and the QEMU processes (killed by PID on drop); [`Fleet::watch`] follows each
//!   machine's REST timeline (polled every 250 ms) and fills the progress bars and
//!   [`Outcome`]s from the events' own times (`at`, stamped by the edge): DHCP is the time from
//!   QEMU's start until the first lease (firmware start-up included), HTTP from there until the
//!   initrd's transfer completed (script and kernel before it), phone-home from there until the
//!   phone-home event with this run's token (the kernel's boot included). There is no TFTP
//!   phase: the iPXE ROM asks for the script over HTTP at once.
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ims_proto::MacAddr;
use serde_json::{Value, json};

use super::control::{CLUSTER, Rest, SITE};
use super::edge::HTTP_PORT;
use super::machine::Outcome;
use super::netns::EDGE_IP;
use super::progress::{Phase, Progress};
use super::qemu::{
    Accel, Firmware, INIT_FAILED, PHONE_HOME_OK, Payload, Prerequisites, Qemu, RouterAdvertiser,
    TOKEN_ARG, Tap, UNDIONLY_KPXE,
};
use super::{LabError, qemu};

/// The boot profile of the QEMU machines.
pub const PROFILE: &str = "lab-qemu";
/// The kernel and initramfs names in the boot root.
pub const KERNEL: &str = "qemu-vmlinuz";
/// See [`KERNEL`].
pub const INITRD: &str = "qemu-initrd.img";

/// The QEMU part of a lab run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuMachines {
    /// How many of the machines are QEMU machines.
    pub count: usize,
    /// The accelerator.
    pub accel: Accel,
    /// Where the payload cache goes (`<cache_base>/qemu-e2e-cache`, unless
    /// `IMS_QEMU_E2E_CACHE` is set).
    pub cache_base: PathBuf,
}

/// The MAC of QEMU machine `i`: `52:54:01:00:00:XX` (never one of [`super::machine_macs`]).
pub fn qemu_mac(i: usize) -> MacAddr {
    let b = (i as u16 + 1).to_be_bytes();
    MacAddr([0x52, 0x54, 0x01, 0x00, b[0], b[1]])
}

/// The fixed address of QEMU machine `i`: `10.77.1.(10 + i)`.
pub fn qemu_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 1, 10u8.saturating_add(i as u8))
}

/// Check the prerequisites, fetch the payload (cache: `IMS_QEMU_E2E_CACHE`, else
/// `<cache_base>/qemu-e2e-cache`) and write the kernel, initramfs and `undionly.kpxe` into
/// `root`. Returns a line describing the payload.
///
/// # Errors
/// A missing prerequisite (with the package to install), no mirror, or a file error.
pub fn prepare(root: &Path, cache_base: &Path) -> Result<String, LabError> {
    Prerequisites::check()?;
    let t = Instant::now();
    let payload = Payload::prepare(&qemu::payload::cache_dir(cache_base))?;
    std::fs::create_dir_all(root)
        .map_err(|e| LabError::Setup(format!("create {}: {e}", root.display())))?;
    for (from, to) in [
        (payload.kernel.as_path(), KERNEL),
        (Path::new(UNDIONLY_KPXE), "undionly.kpxe"),
    ] {
        std::fs::copy(from, root.join(to))
            .map_err(|e| LabError::Setup(format!("copy {} to {to}: {e}", from.display())))?;
    }
    payload.write_initramfs(&root.join(INITRD))?;
    Ok(format!(
        "QEMU payload: {} + busybox-static, modules {} ({:.1} s)",
        payload.kernel_package,
        payload.module_names(),
        t.elapsed().as_secs_f64()
    ))
}

/// Register the QEMU boot profile (with `token` on the kernel command line) and `count`
/// machines in the lab's cluster; returns their ids. Call after [`Rest::register`].
///
/// # Errors
/// A refused request.
pub fn register(
    rest: &mut Rest,
    count: usize,
    token: &str,
    mut progress: impl FnMut(),
) -> Result<Vec<i64>, LabError> {
    let script = format!("http://{EDGE_IP}:{HTTP_PORT}/boot.ipxe?mac=${{net0/mac}}");
    let profile = json!({
        "name": PROFILE, "site": SITE, "bios": "undionly.kpxe", "ipxe_script": script,
        "kernel": KERNEL, "initrd": INITRD,
        "cmdline": format!("console=ttyS0,115200 panic=-1 initrd={INITRD} {TOKEN_ARG}={token} \
                            phone_home={{phone_home}}"),
    });
    create(rest, "/api/boot-profiles", &profile)?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let m = create(
            rest,
            "/api/machines",
            &json!({"cluster": CLUSTER, "hostname": format!("qemu-{}", i + 1),
                    "mac": qemu_mac(i).to_string(), "ip": qemu_ip(i).to_string(),
                    "boot_profile": PROFILE, "netboot": true}),
        )?;
        ids.push(m["id"].as_i64().ok_or_else(|| {
            LabError::Control(format!("POST /api/machines answered without an id: {m}"))
        })?);
        progress();
    }
    Ok(ids)
}

fn create(rest: &mut Rest, path: &str, body: &Value) -> Result<Value, LabError> {
    match rest.call("POST", path, Some(body))? {
        (201, v) => Ok(v),
        (status, v) => Err(LabError::Control(format!(
            "POST {path} {body}: HTTP {status}: {v}"
        ))),
    }
}

/// One QEMU machine of the fleet.
#[derive(Debug)]
struct Member {
    id: i64,
    index: usize,
    vm: Qemu,
    started_wall: SystemTime,
}

/// The running QEMU machines, their taps and the router advertiser; all stopped (QEMU killed
/// by PID) and removed on drop.
#[derive(Debug)]
pub struct Fleet {
    members: Vec<Member>,
    // Dropped after the machines (fields drop in order): QEMU holds the taps open.
    _taps: Vec<Tap>,
    _router: RouterAdvertiser,
    /// Where the serial consoles are.
    pub dir: PathBuf,
    token: String,
}

impl Fleet {
    /// Create a tap per machine on `bridge` in `ns`, start the router advertiser and boot the
    /// machines with ids `ids`; consoles go to `dir`.
    ///
    /// # Errors
    /// A tap, the advertiser or QEMU could not be started (what was started is stopped).
    pub fn start(
        ns: &str,
        bridge: &str,
        ids: &[i64],
        accel: Accel,
        dir: &Path,
        token: &str,
    ) -> Result<Self, LabError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LabError::Setup(format!("create {}: {e}", dir.display())))?;
        let router = RouterAdvertiser::start(ns, bridge)?;
        let mut taps = Vec::new();
        let mut members = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            let tap = Tap::attach(ns, bridge, &format!("qtap{index}"))?;
            let mac = qemu_mac(index).to_string().to_ascii_lowercase();
            let label = format!("qemu-{}", index + 1);
            let vm = Qemu::start(&tap, Firmware::BiosIpxeRom, accel, &mac, dir, &label)?;
            taps.push(tap);
            members.push(Member {
                id: *id,
                index,
                vm,
                started_wall: SystemTime::now(),
            });
        }
        Ok(Self {
            members,
            _taps: taps,
            _router: router,
            dir: dir.to_owned(),
            token: token.to_owned(),
        })
    }

    /// The QEMU process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.vm.pid()).collect()
    }

    /// Follow every machine until it phoned home, failed, `deadline` passed or `cancel` was
    /// set (REST as admin with `password`); bumps `progress` as phases finish.
    pub fn watch(
        &mut self,
        password: &str,
        progress: &Progress,
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> Vec<Outcome> {
        let mut outs: Vec<Outcome> = self
            .members
            .iter()
            .map(|m| Outcome {
                mac: Some(qemu_mac(m.index)),
                ip: Some(qemu_ip(m.index)),
                qemu: true,
                ..Outcome::default()
            })
            .collect();
        for _ in &self.members {
            progress.skip(Phase::Tftp);
        }
        let mut marks: Vec<Marks> = vec![Marks::default(); self.members.len()];
        let mut rest = match Rest::login(password, Duration::from_secs(10), cancel) {
            Ok(r) => Some(r),
            Err(e) => {
                for (o, m) in outs.iter_mut().zip(&mut marks) {
                    m.fail(o, progress, format!("REST login: {e}"));
                }
                None
            }
        };
        while let Some(rest) = rest.as_mut() {
            let stop = cancel.load(Ordering::Relaxed) || Instant::now() >= deadline;
            for ((member, out), marks) in self.members.iter_mut().zip(&mut outs).zip(&mut marks) {
                if marks.done {
                    continue;
                }
                if stop {
                    let why = if cancel.load(Ordering::Relaxed) {
                        "interrupted".to_owned()
                    } else {
                        format!("time limit; console: {}", member.vm.serial.display())
                    };
                    marks.fail(out, progress, why);
                    continue;
                }
                marks.poll(member, rest, out, progress, &self.token);
            }
            if marks.iter().all(|m| m.done) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        outs
    }
}

/// When a machine's phases happened (the events' times).
#[derive(Debug, Clone, Default)]
struct Marks {
    lease: Option<SystemTime>,
    http: Option<SystemTime>,
    done: bool,
}

/// `later - earlier`, zero if the clocks disagree.
fn between(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl Marks {
    /// Look at the machine's console and REST timeline once.
    fn poll(
        &mut self,
        member: &mut Member,
        rest: &mut Rest,
        out: &mut Outcome,
        progress: &Progress,
        token: &str,
    ) {
        let console = member.vm.console();
        if let Some(line) = console.lines().find(|l| l.contains(INIT_FAILED)) {
            let why = format!("{} (console {})", line.trim(), member.vm.serial.display());
            return self.fail(out, progress, why);
        }
        let path = format!("/api/machines/{}/events?page_size=1000", member.id);
        let events = match rest.call("GET", &path, None) {
            Ok((200, v)) => v["results"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        // The time of the first event of `kind` whose message or detail mentions `text`.
        let first = |kind: &str, text: &str| {
            events
                .iter()
                .filter(|e| {
                    e["kind"] == kind
                        && (e["message"].as_str().is_some_and(|m| m.contains(text))
                            || e["detail"].to_string().contains(text))
                })
                .filter_map(|e| humantime::parse_rfc3339_weak(e["at"].as_str()?).ok())
                .min()
        };
        if self.lease.is_none()
            && let Some(at) = first("lease", "")
        {
            self.lease = Some(at);
            out.dhcp = Some(Ok(between(member.started_wall, at)));
            progress.finish(Phase::Dhcp, true);
        }
        if let (Some(lease), None) = (self.lease, self.http)
            && let Some(at) = first("transfer_completed", INITRD)
        {
            self.http = Some(at);
            out.http = Some(Ok(between(lease, at)));
            progress.finish(Phase::Http, true);
        }
        if let Some(http) = self.http
            && let Some(at) = first("phone_home", token)
        {
            out.phone_home = Some(Ok(between(http, at)));
            // The same moment on the monotonic clock (for the time to ACTIVE).
            let ago = SystemTime::now().duration_since(at).unwrap_or_default();
            out.phoned_at = Some(Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
            progress.finish(Phase::PhoneHome, true);
            self.done = true;
            return;
        }
        // A guest that phoned home powers off at once; its events may still be on their way
        // from the edge: wait for them (bounded by the caller's deadline).
        if let Some(status) = member.vm.exited()
            && !console.contains(PHONE_HOME_OK)
        {
            let why = format!(
                "QEMU exited ({status}) before phoning home; console: {}",
                member.vm.serial.display()
            );
            self.fail(out, progress, why);
        }
    }

    /// The machine failed in the phase it was in.
    fn fail(&mut self, out: &mut Outcome, progress: &Progress, why: String) {
        let (slot, phase) = if self.lease.is_none() {
            (&mut out.dhcp, Phase::Dhcp)
        } else if self.http.is_none() {
            (&mut out.http, Phase::Http)
        } else {
            (&mut out.phone_home, Phase::PhoneHome)
        };
        *slot = Some(Err(format!("QEMU: {why}")));
        progress.finish(phase, false);
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_machines_never_share_a_mac_or_the_dynamic_range() {
        let sim = super::super::machine_macs(1000, true);
        for i in 0..8 {
            assert!(!sim.contains(&qemu_mac(i)));
            assert!(!qemu_mac(i).is_multicast());
            assert_eq!(qemu_ip(i).octets()[2], 1);
        }
        assert_ne!(qemu_mac(0), qemu_mac(1));
    }
}
