//! Real firmware, end to end: a QEMU machine PXE-boots through `netbootd` to `ACTIVE`, then
//! boots once more and does not netboot; the same machine under UEFI fetches its boot file over
//! TFTP with the block and window size the firmware asked for.
//!
//! The site: `ims-control` (SQLite in the site's temp dir) and `netbootd` (DHCP on `srv0`, TFTP
//! and HTTP on 10.77.0.1, uplink enrolled with a join token) in the server namespace; in the
//! client namespace a bridge joins the site's veth and QEMU's tap. The machine, its boot profile
//! and its address are registered over REST; the edge gets them from the control plane.
//!
//! 1. SeaBIOS + the virtio NIC's iPXE ROM (`ipxe-qemu`, arch 0, user class `iPXE`): DHCP gives
//!    iPXE the machine's script URL → the script (kernel, initrd, command line with the
//!    phone-home URL) → kernel and initramfs over HTTP → the initramfs (Debian cloud kernel,
//!    busybox-static, virtio modules; built here) gets a lease with udhcpc, POSTs phone-home
//!    with the run's token and powers off. Asserted: the console marker with the token, the
//!    machine `ACTIVE` with netboot off in the REST API, and its timeline (lease with the boot
//!    file, iPXE script, HTTP transfers of kernel and initrd, phone-home).
//! 2. The same machine boots again: it gets an address but no boot file (iPXE finds nothing to
//!    boot and the firmware falls through), nothing is fetched, the machine stays `ACTIVE`.
//! 3. Netboot is switched on again over REST; OVMF's own PXE (arch 7, virtio NIC without option
//!    ROM) gets `snponly.efi` over TFTP: the edge's `TftpStarted` event (in the timeline) shows
//!    blksize 1468 and windowsize 4, what OVMF asks for, and the transfer completes. That iPXE
//!    then asks again (user class `iPXE`), gets the script and boots the same kernel through
//!    the EFI stub; the machine phones home and is `ACTIVE` again.
//!
//! The LAN has an IPv6 router advertiser (as real provisioning networks do), so iPXE does not
//! wait ≈ 13 s per boot for one: the BIOS boot reaches phone-home in ≈ 7 s under TCG.
//!
//! Needs root, QEMU, ipxe-qemu, ipxe, ovmf and a Debian mirror for `apt-get download` (kernel and
//! busybox-static, cached in `target/debug/qemu-e2e-cache`); a missing prerequisite fails the
//! test with the package to install. Every QEMU run has a hard timeout; QEMU, the daemons, the
//! namespaces, the bridge and the tap are removed on drop, also when the test fails.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ims_bench::lab::qemu::payload::cache_dir;
use ims_bench::lab::qemu::{
    Accel, Firmware, INIT_FAILED, Lan, PHONE_HOME_OK, Payload, Prerequisites, Qemu,
    RouterAdvertiser, SNPONLY_EFI, TOKEN_ARG, UNDIONLY_KPXE,
};
use serde_json::{Value, json};
use support::control::{NS_QUIC, NsControl, enroll_in_ns, wait};
use support::netns;
use support::site::{CLIENT_IF, SERVER_IF, SERVER_IP, Site};

const PASSWORD: &str = "qemu-e2e-admin-password";
const HTTP_PORT: u16 = 8080;
const MAC: &str = "52:54:00:e2:e0:01";
const MACHINE_IP: &str = "10.77.0.11";
/// Bound for the BIOS boot to phone-home (TCG, no IPv6 router on the LAN: iPXE waits ≈ 13 s).
const BIOS_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for the second boot to show that nothing netboots.
const SECOND_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for OVMF to fetch its boot file.
const UEFI_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound for the UEFI boot to phone-home.
const UEFI_BOOT_TIMEOUT: Duration = Duration::from_secs(150);

/// The machine's timeline, oldest first, as `(kind, message, detail)`.
fn timeline_of(control: &NsControl, id: i64) -> Vec<(String, String, Value)> {
    let page = control.call(
        "GET",
        &format!("/api/machines/{id}/events?page_size=1000"),
        None,
    );
    let mut out: Vec<(i64, String, String, Value)> = page["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
                e["detail"].clone(),
            )
        })
        .collect();
    out.sort_by_key(|e| e.0);
    out.into_iter().map(|(_, k, m, d)| (k, m, d)).collect()
}

/// Start the machine on the LAN's tap.
fn start_vm(lan: &Lan, firmware: Firmware, accel: Accel, dir: &Path, label: &str) -> Qemu {
    let vm = Qemu::start(&lan.tap, firmware, accel, MAC, dir, label).unwrap();
    eprintln!(
        "[qemu {label}] pid {} ({firmware:?}, {})",
        vm.pid(),
        accel.name()
    );
    vm
}

/// A directory removed on drop, also when the test fails (declare it before the [`Site`]
/// whose directory it names: the site prints its logs when it is dropped, then this removes the
/// kernel, initramfs and logs). `IMS_QEMU_E2E_KEEP=1` keeps it for inspection when the test
/// fails (the site removes it itself when the test passes).
#[derive(Debug, Default)]
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else {
            return;
        };
        if std::env::var_os("IMS_QEMU_E2E_KEEP").is_some_and(|v| v == "1") {
            eprintln!("[qemu] IMS_QEMU_E2E_KEEP=1: keeping {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn show(timeline: &[(String, String, Value)]) -> String {
    timeline
        .iter()
        .map(|(k, m, d)| {
            let probe = if is_probe(k, d) {
                "  (the test's probe)"
            } else {
                ""
            };
            format!("  {k:<20} {m}{probe}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A script fetched by the test itself (from the server's address) to see what the edge
/// serves, not by the machine.
fn is_probe(kind: &str, detail: &Value) -> bool {
    kind == "ipxe_script" && detail.to_string().contains(&format!("\"{SERVER_IP}:"))
}

/// The edge's iPXE script for the machine (what iPXE would get).
fn edge_script(site: &Site) -> Option<String> {
    let addr = SocketAddr::new(SERVER_IP.into(), HTTP_PORT);
    netns::http_get(
        &site.server_ns,
        addr,
        &format!("/boot.ipxe?mac={MAC}"),
        Duration::from_secs(3),
    )
    .ok()
    .filter(|(status, _)| *status == 200)
    .map(|(_, body)| body)
}

#[test]
fn qemu_pxe_boots_through_netbootd_to_active_and_boots_only_once() {
    let t0 = Instant::now();
    Prerequisites::check().unwrap_or_else(|e| panic!("{e}"));
    let accel = Accel::from_env().unwrap_or_else(|e| panic!("IMS_QEMU_ACCEL: {e}"));
    // Next to the test binaries: `target/debug/qemu-e2e-cache`, kept between runs.
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let payload = Payload::prepare(&cache_dir(target)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "[qemu_e2e] payload: {} ({} modules: {}) in {:?}",
        payload.kernel_package,
        payload.modules.len(),
        payload.module_names(),
        t0.elapsed()
    );

    // Dropped after `site` (declared first): removes the site's directory even on failure.
    let mut remove_dir = RemoveOnDrop::default();
    let mut site = Site::new("qemu");
    remove_dir.0 = Some(site.dir().to_path_buf());
    let run_token = format!("run-{}-{}", std::process::id(), t0.elapsed().as_nanos());
    let root = site.dir().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&payload.kernel, root.join("vmlinuz")).unwrap();
    payload.write_initramfs(&root.join("initrd.img")).unwrap();
    std::fs::copy(SNPONLY_EFI, root.join("snponly.efi")).unwrap();
    std::fs::copy(UNDIONLY_KPXE, root.join("undionly.kpxe")).unwrap();

    // The control plane: site, cluster, boot profile, pool and the machine.
    let control_data = site.dir().join("control");
    std::fs::create_dir_all(&control_data).unwrap();
    let control = NsControl::start(
        &site,
        &control_data,
        &site.dir().join("ims-control.log"),
        PASSWORD,
    );
    control.site_with_cluster("lab", "c-lab");
    let script_url = format!("http://{SERVER_IP}:{HTTP_PORT}/boot.ipxe?mac=${{net0/mac}}");
    control.call(
        "POST",
        "/api/boot-profiles",
        Some(json!({
            "name": "p-qemu", "site": "lab",
            "bios": "undionly.kpxe", "uefi_x64": "snponly.efi", "ipxe_script": script_url,
            "kernel": "vmlinuz", "initrd": "initrd.img",
            // `initrd=` names the image for the EFI stub (iPXE on UEFI); harmless under BIOS.
            "cmdline": format!("console=ttyS0,115200 panic=-1 initrd=initrd.img \
                                {TOKEN_ARG}={run_token} phone_home={{phone_home}}"),
        })),
    );
    control.lan_pool("lab");
    let machine = control.call(
        "POST",
        "/api/machines",
        Some(
            json!({"cluster": "c-lab", "hostname": "qemu-1", "mac": MAC, "ip": MACHINE_IP,
                    "boot_profile": "p-qemu"}),
        ),
    );
    let id = machine["id"].as_i64().unwrap();

    // Enrol the edge, then run it: DHCP on srv0, TFTP and HTTP from the root.
    enroll_in_ns(&site, &control_data);
    let root_s = root.display();
    site.start_netbootd(&format!(
        "[[interface]]\nname = \"srv0\"\naddress = \"{SERVER_IP}\"\n\n\
         [[subnet]]\ncidr = \"10.77.0.0/24\"\nlease_time = \"1h\"\n\
         range = [\"10.77.0.100\", \"10.77.0.150\"]\n\n\
         [tftp]\nroot = \"{root_s}\"\nlisten = \"{SERVER_IP}:69\"\n\n\
         [http]\nlisten = \"{SERVER_IP}:{HTTP_PORT}\"\nroot = \"{root_s}\"\n\n\
         [control]\nendpoint = \"{NS_QUIC}\"\n"
    ));
    site.wait_metric("netbootd_uplink_connected", &[], "== 1", |v| v == 1.0);
    let script = wait("the machine's iPXE script at the edge", 30, || {
        edge_script(&site).filter(|s| s.contains("kernel "))
    });
    assert!(script.contains(&run_token), "{script}");
    eprintln!("[qemu_e2e] site ready after {:?}:\n{script}", t0.elapsed());

    let lan = Lan::new(&site.client_ns, CLIENT_IF).unwrap();
    let _router = RouterAdvertiser::start(&site.server_ns, SERVER_IF).unwrap();

    // 1. BIOS: SeaBIOS + iPXE ROM → script → kernel + initramfs over HTTP → phone-home.
    let mut vm = start_vm(&lan, Firmware::BiosIpxeRom, accel, site.dir(), "bios-1");
    let marker = format!("{PHONE_HOME_OK} token={run_token}");
    let (seen, at) = vm
        .wait_console(&[&marker, INIT_FAILED], BIOS_BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("BIOS boot: {e}"));
    assert_eq!(
        seen,
        marker,
        "BIOS boot: the initramfs failed\n{}",
        vm.report()
    );
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "BIOS boot: the guest did not power off within 30 s of phoning home ({status:?})\n{}",
        vm.report()
    );
    let console = vm.console();
    assert!(console.contains("iPXE"), "{}", vm.report());
    let bios_time = at;
    eprintln!("[qemu_e2e] BIOS boot phoned home after {at:?}");
    drop(vm);

    let m = wait("the machine ACTIVE", 30, || {
        let m = control.call("GET", &format!("/api/machines/{id}"), None);
        (m["status"] == "ACTIVE").then_some(m)
    });
    assert_eq!(m["netboot"], false, "{m}");
    let timeline = wait("the whole timeline at the control plane", 20, || {
        let t = timeline_of(&control, id);
        t.iter().any(|(k, _, _)| k == "phone_home").then_some(t)
    });
    let has = |kind: &str, text: &str| {
        timeline
            .iter()
            .any(|(k, m, d)| k == kind && m.contains(text) && !is_probe(k, d))
    };
    for (kind, text) in [
        ("lease", "boot file http://"),
        (
            "ipxe_script",
            "iPXE fetched its boot script (profile p-qemu)",
        ),
        ("transfer_started", "HTTP download of vmlinuz"),
        ("transfer_completed", "HTTP download of vmlinuz completed"),
        ("transfer_started", "HTTP download of initrd.img"),
        (
            "transfer_completed",
            "HTTP download of initrd.img completed",
        ),
        ("phone_home", "provisioning finished"),
    ] {
        assert!(
            has(kind, text),
            "timeline has no {kind} entry with {text:?}:\n{}",
            show(&timeline)
        );
    }
    let phone = timeline.iter().find(|(k, _, _)| k == "phone_home").unwrap();
    assert!(
        phone.2.to_string().contains(&run_token),
        "the phone-home body is not this run's: {}",
        phone.2
    );
    eprintln!("[qemu_e2e] timeline after boot 1:\n{}", show(&timeline));

    // 2. Boot once: the next boot gets an address but nothing to boot.
    wait("netboot off at the edge", 20, || {
        edge_script(&site).filter(|s| s.contains("netboot is off"))
    });
    let before = timeline.len();
    let mut vm = start_vm(&lan, Firmware::BiosIpxeRom, accel, site.dir(), "bios-2");
    let (seen, at) = vm
        .wait_console(
            &[
                "No bootable device",
                "No filename or root path",
                "Nothing to boot",
                &marker,
            ],
            SECOND_BOOT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("second boot: {e}"));
    assert_ne!(
        seen,
        marker,
        "the second boot netbooted again\n{}",
        vm.report()
    );
    eprintln!("[qemu_e2e] second boot fell through ({seen:?}) after {at:?}");
    let second = wait("the second boot's lease at the control plane", 20, || {
        let t = timeline_of(&control, id);
        t[before..]
            .iter()
            .any(|(k, _, _)| k == "lease")
            .then_some(t)
    });
    vm.kill();
    let console = vm.console();
    drop(vm);
    assert!(
        console.contains("iPXE") && !console.contains("vmlinuz"),
        "second boot console:\n{console}"
    );
    let new = &second[before..];
    assert!(
        new.iter()
            .filter(|(k, _, d)| !is_probe(k, d))
            .all(|(k, _, d)| k == "lease" && d["boot_file"].is_null()),
        "the second boot got a boot file or fetched something:\n{}",
        show(new)
    );
    let m = control.call("GET", &format!("/api/machines/{id}"), None);
    assert_eq!(m["status"], "ACTIVE", "{m}");

    // 3. UEFI: netboot on again; OVMF's PXE fetches snponly.efi over TFTP.
    control.call(
        "PATCH",
        &format!("/api/machines/{id}"),
        Some(json!({"netboot": true})),
    );
    wait("netboot on again at the edge", 20, || {
        edge_script(&site).filter(|s| s.contains("kernel "))
    });
    let before = timeline_of(&control, id).len();
    let mut vm = start_vm(&lan, Firmware::UefiPxe, accel, site.dir(), "uefi");
    let started = Instant::now();
    let entries = loop {
        let t = timeline_of(&control, id);
        let done = t[before..]
            .iter()
            .any(|(k, m, _)| k == "transfer_completed" && m.contains("snponly.efi"));
        if done {
            break t;
        }
        assert!(
            started.elapsed() < UEFI_TIMEOUT,
            "UEFI: no completed TFTP transfer of snponly.efi within {UEFI_TIMEOUT:?}:\n{}\n{}",
            show(&t[before..]),
            vm.report()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let uefi_tftp_time = vm.elapsed();
    // OVMF probes the size first (tsize) and ends that transfer with ERROR 8 once it has the
    // OACK: a size query, not a failure, so no failed transfer and no ERROR status.
    let m = control.call("GET", &format!("/api/machines/{id}"), None);
    assert_ne!(
        m["status"], "ERROR",
        "OVMF's tsize probe marked the machine: {m}"
    );
    let new = &entries[before..];
    assert!(
        !new.iter().any(|(k, _, _)| k == "transfer_failed"),
        "OVMF's boot shows a failed transfer:\n{}",
        show(new)
    );
    let tftp: Vec<&Value> = new
        .iter()
        .filter(|(k, m, _)| k == "transfer_started" && m.contains("TFTP transfer of snponly.efi"))
        .map(|(_, _, d)| d)
        .collect();
    assert!(!tftp.is_empty(), "{}", show(new));
    let negotiated = tftp
        .iter()
        .any(|d| d["type"] == "TftpStarted" && d["blksize"] == 1468 && d["windowsize"] == 4);
    assert!(
        negotiated,
        "OVMF asks for blksize 1468 and windowsize 4; the TftpStarted events show:\n{tftp:#?}"
    );
    assert!(
        new.iter()
            .any(|(k, _, d)| k == "lease" && d["boot_file"] == "snponly.efi"),
        "UEFI: no lease handing out snponly.efi:\n{}",
        show(new)
    );
    let size = std::fs::metadata(SNPONLY_EFI).unwrap().len();
    assert!(
        new.iter().any(|(k, _, d)| k == "transfer_completed"
            && d["type"] == "TftpCompleted"
            && d["path"] == "snponly.efi"
            && d["bytes"] == size
            && d["blksize"] == 1468
            && d["windowsize"] == 4),
        "UEFI: snponly.efi ({size} bytes) was not delivered whole at blksize 1468, window 4:\n{}",
        show(new)
    );

    // snponly.efi is iPXE: it asks again (user class iPXE, arch 7), gets the script and boots
    // the kernel through the EFI stub; the initramfs phones home and the machine is ACTIVE again.
    let (seen, uefi_time) = vm
        .wait_console(&[&marker, INIT_FAILED], UEFI_BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("UEFI boot: {e}"));
    assert_eq!(
        seen,
        marker,
        "UEFI boot: the initramfs failed\n{}",
        vm.report()
    );
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "UEFI boot: the guest did not power off within 30 s of phoning home ({status:?})\n{}",
        vm.report()
    );
    drop(vm);
    let m = wait("the machine ACTIVE after the UEFI boot", 30, || {
        let m = control.call("GET", &format!("/api/machines/{id}"), None);
        (m["status"] == "ACTIVE" && m["netboot"] == false).then_some(m)
    });
    let entries = wait("the UEFI boot's phone-home in the timeline", 20, || {
        let t = timeline_of(&control, id);
        t[before..]
            .iter()
            .any(|(k, _, _)| k == "phone_home")
            .then_some(t)
    });
    let new = &entries[before..];
    for (kind, text) in [
        (
            "ipxe_script",
            "iPXE fetched its boot script (profile p-qemu)",
        ),
        ("transfer_completed", "HTTP download of vmlinuz completed"),
        (
            "transfer_completed",
            "HTTP download of initrd.img completed",
        ),
    ] {
        assert!(
            new.iter()
                .any(|(k, t, d)| k == kind && t.contains(text) && !is_probe(k, d)),
            "UEFI: timeline has no {kind} entry with {text:?}:\n{}",
            show(new)
        );
    }
    eprintln!(
        "[qemu_e2e] UEFI timeline (machine {}):\n{}",
        m["status"],
        show(new)
    );

    drop(lan);
    drop(control);
    drop(site);
    eprintln!(
        "[qemu_e2e] BIOS boot to phone-home {bios_time:?}; UEFI: snponly.efi delivered at \
         {uefi_tftp_time:?}, phone-home at {uefi_time:?}; whole test {:?}",
        t0.elapsed()
    );
}
