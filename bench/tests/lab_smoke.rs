//! `ims-lab` builds its virtual site, boots a handful of simulated machines to ACTIVE and tears
//! everything down: afterwards no namespace of the run, no process it started and no temporary
//! directory is left. Once to the end, once interrupted with SIGINT while it is kept running
//! (`--keep`), and once with one of the machines a real QEMU machine (`--qemu 1`).
//!
//! Needs root (network namespaces, raw sockets) and `netbootd` and `ims-control` built next to
//! `ims-lab` (`cargo test --workspace` builds them; otherwise `cargo build -p ims-netboot -p
//! ims-control`). The `--qemu` test also needs what the QEMU e2e test needs (qemu-system-x86,
//! ipxe-qemu, ipxe, ovmf, a Debian mirror or the cached payload in
//! `target/debug/qemu-e2e-cache`); a missing one fails it with the package to install.
// A process test reads the clock and uses real timeouts; a failed setup step panics the test.
#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LAB: &str = env!("CARGO_BIN_EXE_ims-lab");

fn sibling(name: &str) -> PathBuf {
    let path = Path::new(LAB).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build -p ims-netboot -p ims-control, or cargo test --workspace)",
        path.display()
    );
    path
}

/// Start `ims-lab --machines 5` with small files; its stdout lines arrive on the channel.
fn start(extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "ims-lab creates network namespaces: run this test as root (CI does, through .ci/run)"
    );
    let mut child = Command::new(LAB)
        .args(["--machines", "5", "--kernel-mib", "1", "--initrd-mib", "1"])
        .args([
            "--boot-file-kib",
            "256",
            "--max-seconds",
            "30",
            "--ui-port",
            "0",
        ])
        .arg("--netbootd")
        .arg(sibling("netbootd"))
        .arg("--ims-control")
        .arg(sibling("ims-control"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ims-lab");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("[ims-lab] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Wait (bounded) for the exit; kill on timeout and fail.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ims-lab did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing of run `pid` is left: namespaces, processes using its files, its temp directory.
fn assert_clean(pid: u32) {
    let prefix = format!("imslab-{pid}-");
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        !list.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind:\n{list}"
    );
    let dir = std::env::temp_dir().join(format!("ims-lab-{pid}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    // Every process the lab starts names a file in its directory on its command line.
    let marker = dir.display().to_string();
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) {
            left.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn boots_five_machines_to_active_and_tears_down() {
    let (mut child, rx) = start(&[]);
    let pid = child.id();
    let status = wait_exit(&mut child, Duration::from_secs(90));
    let lines: Vec<String> = rx.try_iter().collect();
    let text = lines.join("\n");
    assert!(status.success(), "ims-lab failed ({status}):\n{text}");
    assert!(text.contains("5/5 ACTIVE"), "{text}");
    for phase in ["DHCP", "TFTP", "HTTP", "phone-home", "ACTIVE"] {
        let row: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.len() == 6 && cols[0] == phase)
            .unwrap_or_else(|| panic!("no {phase} row:\n{text}"));
        assert_eq!(&row[1..3], &["5", "0"], "{phase}: {row:?}");
    }
    assert!(text.contains("login: admin / "), "{text}");
    assert_clean(pid);
}

#[test]
fn sigint_while_kept_tears_down() {
    let (mut child, rx) = start(&["--keep"]);
    let pid = child.id();
    let end = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no --keep notice within 90 s:\n{}", seen.join("\n")));
        let kept = line.contains("--keep: the site stays up");
        seen.push(line);
        if kept {
            break;
        }
    }
    // The site is up: its namespaces exist.
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        list.lines()
            .filter(|l| l.starts_with(&format!("imslab-{pid}-")))
            .count(),
        3,
        "{list}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "ims-lab after SIGINT: {status}");
    assert_clean(pid);
}

#[test]
fn one_real_qemu_machine_boots_to_active_beside_simulated_ones() {
    let (mut child, rx) = start(&["--qemu", "1"]);
    let pid = child.id();
    let status = wait_exit(&mut child, Duration::from_secs(240));
    let lines: Vec<String> = rx.try_iter().collect();
    let text = lines.join("\n");
    assert!(
        status.success(),
        "ims-lab --qemu 1 failed ({status}):\n{text}"
    );
    assert!(text.contains("1 real QEMU, 4 simulated"), "{text}");
    assert!(text.contains("5/5 ACTIVE"), "{text}");
    // Every phase of all five machines, except TFTP, which the QEMU machine's iPXE ROM skips.
    for (phase, ok) in [
        ("DHCP", "5"),
        ("TFTP", "4"),
        ("HTTP", "5"),
        ("phone-home", "5"),
        ("ACTIVE", "5"),
    ] {
        let row: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.len() == 6 && cols[0] == phase)
            .unwrap_or_else(|| panic!("no {phase} row:\n{text}"));
        assert_eq!(&row[1..3], &[ok, "0"], "{phase}: {row:?}");
    }
    let qemu = lines
        .iter()
        .find(|l| l.trim_start().starts_with("52:54:01:00:00:01:"))
        .unwrap_or_else(|| panic!("no line for the QEMU machine:\n{text}"));
    assert!(
        qemu.contains("TFTP —") && !qemu.contains("failed") && !qemu.contains("ACTIVE —"),
        "{qemu}"
    );
    assert!(text.contains("serial consoles: "), "{text}");
    // QEMU's command line names its console file in the lab's directory: checked here too.
    assert_clean(pid);
}
