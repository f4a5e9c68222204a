//! End-to-end tests of netbootd's HTTP boot server (`[http]`) with curl, in network namespaces
//! the tests create and remove: byte-exact files, HEAD, single ranges (206/416), traversal
//! refused, per-machine iPXE scripts, and phone-home events.
//!
//! They need root (CI runs them as root through `.ci/run`) and curl and iproute2.
// Tests drive real processes in real time: reading the clock is what they must do.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::site::NETBOOTD;
use support::tftp::{HTTP_ADDR, Lab, check_file, curl_tftp_argv, same_bytes};
use support::{run, tool};

const MAC_A: &str = "02:77:00:00:10:0a";
const MAC_OFF: &str = "02:77:00:00:10:0b";
const MAC_UNKNOWN: &str = "02:77:00:00:99:99";
const HTTP_REQUESTS: &str = "netbootd_http_requests_total";

/// A daemon with DHCP on srv0, `[tftp]` and `[http]` on the same root, a boot profile with a
/// kernel, an initrd and a command line template, machine A (netboot on) and machine OFF
/// (netboot off).
fn config(lab: &Lab, http_extra: &str) -> String {
    format!(
        r#"
[[interface]]
name = "srv0"
address = "10.77.0.1"

[[subnet]]
cidr = "10.77.0.0/24"
boot_profile = "linux"

[[boot_profile]]
name = "linux"
bios = "undionly.kpxe"
ipxe_script = "http://{HTTP_ADDR}/boot.ipxe"
kernel = "images/vmlinuz"
initrd = "images/initrd.img"
cmdline = "console=ttyS0 hostname={{hostname}} ip={{ip}} mac={{mac}} phone_home={{phone_home}}"

[[machine]]
mac = "{MAC_A}"
ip = "10.77.0.10"
hostname = "node-a"

[[machine]]
mac = "{MAC_OFF}"
ip = "10.77.0.11"
hostname = "node-off"
netboot = false

{}
[http]
listen = "{HTTP_ADDR}"
public_url = "http://{HTTP_ADDR}"
{http_extra}
"#,
        lab.tftp_section("")
    )
}

/// What curl got.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header lines of the last response, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// curl's command line, exit status and stderr, for messages.
    trace: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Run curl in the client namespace against `http://10.77.0.1:8080{path}` with `args`.
fn curl(lab: &Lab, args: &[&str], path: &str) -> Reply {
    let n = support::next_id();
    let body = lab.dl_path(&format!("http-body-{n}"));
    let head = lab.dl_path(&format!("http-head-{n}"));
    let url = format!("http://{HTTP_ADDR}{path}");
    let curl = tool("curl");
    let (b, h) = (body.display().to_string(), head.display().to_string());
    let mut argv = vec![
        curl.as_str(),
        "-sS",
        "--max-time",
        "60",
        "-o",
        &b,
        "-D",
        &h,
        "-w",
        "%{http_code}",
    ];
    argv.extend(args);
    argv.push(&url);
    let out = lab.client(&argv, Duration::from_secs(90));
    let status: u16 = out.stdout.trim().parse().unwrap_or(0);
    assert!(
        status != 0,
        "curl got no HTTP response:\n{out}\n{}",
        lab.context()
    );
    let head_text = std::fs::read_to_string(&head).unwrap_or_default();
    // With redirects or 100-continue there may be several header blocks: keep the last.
    let last_block = head_text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        trace: format!("{out}\n--- response headers\n{head_text}"),
    }
}

/// Send `request` as is over TCP from the client namespace; everything until the server
/// closes the connection (bounded by 10 s).
fn raw_http(lab: &Lab, request: &str) -> Vec<u8> {
    let request = request.to_owned();
    support::netns::run_in(&lab.site.client_ns, move || {
        let addr = std::net::SocketAddr::V4(HTTP_ADDR);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        s.write_all(request.as_bytes()).expect("send the request");
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("read the response: {e}"));
        out
    })
}

fn start_lab(tag: &str) -> Lab {
    let lab = Lab::new(tag, None);
    lab.put("images/vmlinuz", b"not really a kernel\n");
    lab.put("images/initrd.img", &support::tftp::random_bytes(70_000, 3));
    lab
}

/// GET the 40 MiB file byte-exact, HEAD its length, single ranges (206 with Content-Range; 416
/// past the end), 404 for a missing file; `netbootd_http_requests_total` counts by status.
#[test]
fn get_head_and_ranges() {
    let mut lab = start_lab("httpget");
    let big = lab.put_random("big.bin", 40 << 20);
    let size = big.len();
    let body = config(&lab, "");
    lab.start(&body);

    let t = Instant::now();
    let r = curl(&lab, &[], "/big.bin");
    assert_eq!(r.status, 200, "GET /big.bin\n{}", r.trace);
    same_bytes(&r.body, &big).unwrap_or_else(|e| panic!("GET /big.bin: {e}\n{}", r.trace));
    eprintln!(
        "GET 40 MiB: {:.2} s ({:.0} MB/s)",
        t.elapsed().as_secs_f64(),
        size as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    assert_eq!(
        r.header("content-length"),
        Some(size.to_string().as_str()),
        "{}",
        r.trace
    );

    let r = curl(&lab, &["-I"], "/big.bin");
    assert_eq!(r.status, 200, "HEAD /big.bin\n{}", r.trace);
    assert_eq!(
        r.header("content-length"),
        Some(size.to_string().as_str()),
        "HEAD must give the file's length\n{}",
        r.trace
    );
    // curl -I writes the headers where the body would go: check the body on the wire instead.
    let raw = raw_http(
        &lab,
        "HEAD /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("HEAD: not an HTTP response: {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "HEAD: {head}");
    assert!(body.is_empty(), "HEAD returned {} body bytes", body.len());

    let ranges = [
        ("bytes=1000-1999".to_owned(), 1000, 1999),
        ("bytes=0-0".to_owned(), 0, 0),
        (format!("bytes={}-", size - 40), size - 40, size - 1),
        ("bytes=-100".to_owned(), size - 100, size - 1),
    ];
    for (range, first, last) in ranges {
        let hdr = format!("Range: {range}");
        let r = curl(&lab, &["-H", &hdr], "/big.bin");
        assert_eq!(r.status, 206, "{range}\n{}", r.trace);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {first}-{last}/{size}").as_str()),
            "{range}\n{}",
            r.trace
        );
        same_bytes(&r.body, &big[first..=last]).unwrap_or_else(|e| panic!("{range}: {e}"));
    }
    // A range in the middle of a file in a subdirectory, through curl's own -r.
    let r = curl(&lab, &["-r", "10-19"], "/images/initrd.img");
    assert_eq!(r.status, 206, "{}", r.trace);
    same_bytes(&r.body, &support::tftp::random_bytes(70_000, 3)[10..20]).expect("-r 10-19");

    let r = curl(&lab, &["-H", &format!("Range: bytes={size}-")], "/big.bin");
    assert_eq!(
        r.status, 416,
        "a range starting at the end is unsatisfiable\n{}",
        r.trace
    );
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{size}").as_str()),
        "416 must carry Content-Range: bytes */SIZE\n{}",
        r.trace
    );

    let r = curl(&lab, &[], "/no/such/file");
    assert_eq!(r.status, 404, "{}", r.trace);

    lab.site
        .wait_metric(HTTP_REQUESTS, &[("status", "206")], ">= 5", |v| v >= 5.0);
    lab.site
        .wait_metric(HTTP_REQUESTS, &[("status", "416")], ">= 1", |v| v >= 1.0);
    lab.site
        .wait_metric(HTTP_REQUESTS, &[("status", "404")], ">= 1", |v| v >= 1.0);
    lab.site
        .wait_metric(HTTP_REQUESTS, &[("status", "200")], ">= 2", |v| v >= 2.0);
}

/// Nothing outside the root is served: `..` raw (`--path-as-is`) and percent-encoded, encoded
/// slashes and backslashes, symlinks out, a FIFO (must not hang), a directory. The daemon keeps
/// serving right after.
#[test]
fn traversal_and_special_files_are_refused() {
    let mut lab = start_lab("httppaths");
    let good = lab.put_random("good.bin", 5000);
    let site_dir = lab.site.dir().to_path_buf();
    std::fs::create_dir_all(site_dir.join("etc")).expect("mkdir");
    std::fs::write(site_dir.join("etc/passwd"), "SECRET next to the root\n").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", lab.root.join("passwd-link")).expect("symlink");
    std::os::unix::fs::symlink("/dev/zero", lab.root.join("zero-link")).expect("symlink");
    nix::unistd::mkfifo(
        &lab.root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    std::fs::create_dir_all(lab.root.join("subdir")).expect("mkdir");
    lab.put("subdir/inner.bin", b"inner");
    let body = config(&lab, "");
    lab.start(&body);

    let deep = format!("/{}etc/passwd", "../".repeat(12));
    let attacks = [
        "/../etc/passwd",
        deep.as_str(),
        "/images/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%5cetc%5cpasswd",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/passwd-link",
        "/zero-link",
        "/fifo",
        "/subdir",
        "/subdir/",
    ];
    for path in attacks {
        let t = Instant::now();
        let r = curl(&lab, &["--path-as-is", "--max-filesize", "1000000"], path);
        let text = r.text();
        assert!(
            (400..500).contains(&r.status),
            "GET {path}: want a 4xx refusal, got {}\n{}\n{}",
            r.status,
            r.trace,
            lab.context()
        );
        assert!(
            !text.contains("SECRET") && !text.contains("root:x:0:0"),
            "GET {path} leaked a file outside the root:\n{text}"
        );
        eprintln!("GET {path}: {} in {:?}", r.status, t.elapsed());
        let r = curl(&lab, &[], "/good.bin");
        assert_eq!(r.status, 200, "GET /good.bin after {path}\n{}", r.trace);
        same_bytes(&r.body, &good).unwrap_or_else(|e| panic!("good.bin after {path}: {e}"));
    }
    // Inside a directory, files are served.
    let r = curl(&lab, &[], "/subdir/inner.bin");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"inner"[..]),
        "{}",
        r.trace
    );
    assert!(
        lab.site.netbootd_alive(),
        "netbootd died\n{}",
        lab.context()
    );
}

/// The iPXE script for a registered machine (netboot on) boots its profile's kernel and initrd
/// from this server with the substituted command line, at `?mac=` and at `/{mac}`; the URLs in
/// it work (the files come back byte-exact, the phone-home URL takes a POST). Unknown MACs and
/// machines with netboot off get a script that exits.
#[test]
fn ipxe_scripts_per_machine() {
    let mut lab = start_lab("httpipxe");
    let body = config(&lab, "");
    lab.start(&body);
    let base = format!("http://{HTTP_ADDR}");

    let by_query = curl(&lab, &[], &format!("/boot.ipxe?mac={MAC_A}"));
    let by_path = curl(&lab, &[], &format!("/boot.ipxe/{MAC_A}"));
    let upper = curl(
        &lab,
        &[],
        &format!("/boot.ipxe?mac={}", MAC_A.to_ascii_uppercase()),
    );
    for r in [&by_query, &by_path, &upper] {
        assert_eq!(r.status, 200, "{}", r.trace);
    }
    let script = by_query.text();
    assert_eq!(
        by_path.text(),
        script,
        "/boot.ipxe/{{mac}} and ?mac= must give the same script"
    );
    assert_eq!(upper.text(), script, "MACs are case-insensitive");
    assert!(
        script.starts_with("#!ipxe"),
        "an iPXE script starts with #!ipxe:\n{script}"
    );
    let line = |word: &str| {
        script
            .lines()
            .map(str::trim)
            .find(|l| l.split_whitespace().next() == Some(word))
            .unwrap_or_else(|| panic!("no `{word}` line in the script:\n{script}"))
            .to_owned()
    };
    let kernel = line("kernel");
    let mut words = kernel.split_whitespace().skip(1);
    let kernel_url = words.next().unwrap_or_default().to_owned();
    assert_eq!(kernel_url, format!("{base}/images/vmlinuz"), "{script}");
    let cmdline: Vec<&str> = words.collect();
    for want in [
        "console=ttyS0",
        "hostname=node-a",
        "ip=10.77.0.10",
        &format!("mac={MAC_A}"),
    ] {
        assert!(
            cmdline.contains(&want),
            "the kernel command line lacks {want}: {cmdline:?}\n{script}"
        );
    }
    let phone_home = cmdline
        .iter()
        .find_map(|w| w.strip_prefix("phone_home="))
        .unwrap_or_else(|| panic!("no phone_home= in the command line:\n{script}"));
    assert!(
        phone_home.starts_with(&base) && phone_home.to_ascii_lowercase().contains(MAC_A),
        "phone_home must be a URL on this server naming the machine: {phone_home}"
    );
    assert!(
        !script.contains('{'),
        "unsubstituted placeholder in:\n{script}"
    );
    let initrd = line("initrd");
    assert!(
        initrd.contains(&format!("{base}/images/initrd.img")),
        "{script}"
    );
    assert!(
        script.lines().any(|l| l.trim() == "boot"),
        "no `boot` line:\n{script}"
    );

    // The URLs work.
    let path_of = |url: &str| url.strip_prefix(&base).map(str::to_owned);
    let r = curl(&lab, &[], &path_of(&kernel_url).expect("kernel URL"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"not really a kernel\n"[..])
    );
    let r = curl(&lab, &[], "/images/initrd.img");
    same_bytes(&r.body, &support::tftp::random_bytes(70_000, 3)).expect("initrd");
    let r = curl(
        &lab,
        &["-X", "POST", "--data", ""],
        &path_of(phone_home).expect("phone_home URL"),
    );
    assert_eq!(
        r.status, 204,
        "POST to the script's phone_home URL\n{}",
        r.trace
    );

    for (who, mac) in [("unknown MAC", MAC_UNKNOWN), ("netboot = false", MAC_OFF)] {
        for path in [format!("/boot.ipxe?mac={mac}"), format!("/boot.ipxe/{mac}")] {
            let r = curl(&lab, &[], &path);
            let text = r.text();
            assert_eq!(r.status, 200, "{who}: {path}\n{}", r.trace);
            assert!(
                text.starts_with("#!ipxe"),
                "{who}: not an iPXE script:\n{text}"
            );
            assert!(
                text.lines()
                    .any(|l| l.trim() == "exit" || l.trim().starts_with("exit ")),
                "{who}: the script must `exit` (fall through to the next boot device):\n{text}"
            );
            let booting = text.lines().find(|l| {
                matches!(
                    l.split_whitespace().next(),
                    Some("kernel" | "initrd" | "imgfetch" | "chain" | "boot" | "sanboot")
                )
            });
            assert!(
                booting.is_none(),
                "{who}: must not boot anything, but has {booting:?}:\n{text}"
            );
        }
    }
}

/// `POST /phone-home/{MAC}` answers 204 and records an event that `netbootd events --json`
/// lists; a malformed MAC is refused with 400.
#[test]
fn phone_home_is_recorded() {
    let mut lab = start_lab("httpphone");
    let body = config(&lab, "");
    lab.start(&body);

    let r = curl(
        &lab,
        &["-X", "POST", "--data", ""],
        &format!("/phone-home/{MAC_A}"),
    );
    assert_eq!(r.status, 204, "{}", r.trace);
    assert!(r.body.is_empty(), "204 has no body");
    let r = curl(&lab, &["-X", "POST", "--data", ""], "/phone-home/not-a-mac");
    assert_eq!(r.status, 400, "malformed MAC\n{}", r.trace);

    let out = run(
        Command::new(NETBOOTD)
            .arg("events")
            .arg("--config")
            .arg(lab.site.config_path())
            .arg("--json"),
        Duration::from_secs(10),
    );
    assert!(
        out.success(),
        "netbootd events --json failed:\n{out}\n{}",
        lab.context()
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("netbootd events --json printed invalid JSON ({e}):\n{out}"));
    let text = json.to_string().to_ascii_lowercase();
    let events = json.as_array().map_or(0, Vec::len);
    assert!(
        text.contains(MAC_A) && text.contains("phone"),
        "no phone-home event for {MAC_A} among {events} events:\n{}",
        out.stdout
    );
    assert!(
        !text.contains("not-a-mac"),
        "the refused request was recorded:\n{}",
        out.stdout
    );
}

/// 32 clients download the same 10 MiB file at once, over HTTP and over TFTP at the same
/// time: all byte-exact.
#[test]
fn parallel_downloads_http_and_tftp() {
    const N: usize = 32;
    let mut lab = start_lab("httppar");
    let want = lab.put_random("par.bin", 10 << 20);
    let body = config(&lab, "max_downloads = 8\n");
    lab.start(&body);
    let url = format!("http://{HTTP_ADDR}/par.bin");
    let mut jobs = Vec::new();
    for i in 0..N {
        let local = lab.dl_path(&format!("par-http-{i}"));
        let argv = vec![
            tool("curl"),
            "-sS".to_owned(),
            "--max-time".to_owned(),
            "120".to_owned(),
            "-o".to_owned(),
            local.display().to_string(),
            url.clone(),
        ];
        jobs.push((format!("HTTP {i}"), local.clone(), lab.spawn_client(&argv)));
        let local = lab.dl_path(&format!("par-tftp-{i}"));
        let argv = curl_tftp_argv("par.bin", &local, Some(1468));
        jobs.push((format!("TFTP {i}"), local.clone(), lab.spawn_client(&argv)));
    }
    let ids: Vec<_> = jobs.iter().map(|j| j.2).collect();
    let status = lab.wait_clients(&ids, Duration::from_secs(150), |_| {});
    let bad: Vec<String> = jobs
        .iter()
        .zip(&status)
        .filter_map(|((what, local, id), s)| {
            let v = match s {
                None => Err("still running after 150 s".to_owned()),
                Some(s) if !s.success() => Err(format!("curl exited with {s}")),
                Some(_) => check_file(Path::new(local), &want),
            };
            v.err()
                .map(|e| format!("{what}: {e}\n{}", lab.site.background_log(*id)))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} downloads failed:\n{}\n{}",
        bad.len(),
        2 * N,
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
        lab.context()
    );
}
