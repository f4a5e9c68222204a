//! One simulated machine booting: DHCP (PXE), TFTP of the boot file with the options UEFI
//! firmware asks for, the iPXE script and kernel and initrd over HTTP, then phone-home.
//!
//! The TFTP side drives the storm generator's sans-IO [`Client`]; HTTP is a small streaming
//! HTTP/1.1 client that counts the body without keeping it. Every socket is bound to the
//! address the machine leased (the client namespace treats the dynamic range as local), so each
//! machine is its own source address. Each step is bounded by the caller's deadline.
#![allow(clippy::disallowed_methods)] // an I/O driver: real clocks and timeouts

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ims_proto::MacAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

use super::progress::{Phase, Progress};
use super::pxe_dhcp::{Dhcp, Lease};
use crate::tftp_storm::packet::{RequestOptions, encode_ack, encode_rrq};
use crate::tftp_storm::{Client, ClientParams, Payload, State, Target};

/// How far a machine boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// DHCP and the boot file (the boot-storm comparison).
    BootFile,
    /// Through phone-home (the full lab).
    PhoneHome,
}

/// What every machine of a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// TFTP block size asked for.
    pub blksize: u16,
    /// TFTP window size asked for.
    pub windowsize: u16,
    /// HTTP port of the edge (script, kernel, initrd, phone-home).
    pub http_port: u16,
    /// How far to go.
    pub until: Until,
    /// Hard stop for every step.
    pub deadline: Instant,
}

/// One machine's result: per phase, the time it took or why it failed (`None`: not reached).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The machine.
    pub mac: Option<MacAddr>,
    /// DISCOVER to ACK.
    pub dhcp: Option<Result<Duration, String>>,
    /// Read request to the last block.
    pub tftp: Option<Result<Duration, String>>,
    /// Script, kernel and initrd.
    pub http: Option<Result<Duration, String>>,
    /// The phone-home POST.
    pub phone_home: Option<Result<Duration, String>>,
    /// From the first DISCOVER until the boot file was complete.
    pub boot_file: Option<Duration>,
    /// When the phone-home was sent.
    pub phoned_at: Option<Instant>,
    /// The leased address.
    pub ip: Option<Ipv4Addr>,
    /// Booted by a real QEMU machine (`ims-lab --qemu`): a phase it does not go through (TFTP,
    /// with the NIC's iPXE ROM) is `None` and not a failure.
    pub qemu: bool,
}

fn record(progress: &Progress, phase: Phase, r: &Result<Duration, String>) {
    progress.finish(phase, r.is_ok());
}

/// Boot machine `mac` (transaction id `xid`) as far as `plan` says.
pub async fn boot(
    dhcp: Arc<Dhcp>,
    mac: MacAddr,
    xid: u32,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
) -> Outcome {
    let mut out = Outcome {
        mac: Some(mac),
        ..Outcome::default()
    };
    let deadline = tokio::time::Instant::from_std(plan.deadline);
    let start = Instant::now();
    let lease = match tokio::time::timeout_at(deadline, dhcp.dora(mac, xid)).await {
        Ok(Ok(lease)) => lease,
        Ok(Err(e)) => return fail_dhcp(out, &progress, e),
        Err(_) => return fail_dhcp(out, &progress, "time limit".to_owned()),
    };
    let dhcp_done = Instant::now();
    out.dhcp = Some(Ok(dhcp_done - start));
    out.ip = Some(lease.ip);
    progress.finish(Phase::Dhcp, true);

    let tftp = match tokio::time::timeout_at(deadline, tftp(&lease, &plan)).await {
        Ok(r) => r,
        Err(_) => Err("time limit".to_owned()),
    };
    record(&progress, Phase::Tftp, &tftp);
    let ok = tftp.is_ok();
    out.tftp = Some(tftp);
    if !ok {
        return out;
    }
    out.boot_file = Some(start.elapsed());
    if plan.until == Until::BootFile {
        return out;
    }

    let server = SocketAddrV4::new(lease.next_server, plan.http_port);
    let http = match tokio::time::timeout_at(deadline, http_boot(lease.ip, server, mac)).await {
        Ok(r) => r,
        Err(_) => Err("time limit".to_owned()),
    };
    record(&progress, Phase::Http, &http);
    let ok = http.is_ok();
    out.http = Some(http);
    if !ok {
        return out;
    }

    let t = Instant::now();
    let path = format!("/phone-home/{mac}");
    let body = br#"{"installed": true}"#;
    let r = tokio::time::timeout_at(
        deadline,
        request(lease.ip, server, "POST", &path, Some(body)),
    )
    .await;
    let r = match r {
        Ok(Ok((status, _))) if (200..300).contains(&status) => Ok(t.elapsed()),
        Ok(Ok((status, _))) => Err(format!("phone-home answered HTTP {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("time limit".to_owned()),
    };
    record(&progress, Phase::PhoneHome, &r);
    if r.is_ok() {
        out.phoned_at = Some(Instant::now());
    }
    out.phone_home = Some(r);
    out
}

fn fail_dhcp(mut out: Outcome, progress: &Progress, e: String) -> Outcome {
    progress.finish(Phase::Dhcp, false);
    out.dhcp = Some(Err(e));
    out
}

/// Fetch the boot file over TFTP from the lease's next server, bound to the leased address.
async fn tftp(lease: &Lease, plan: &Plan) -> Result<Duration, String> {
    let socket = UdpSocket::bind(SocketAddr::from((lease.ip, 0)))
        .await
        .map_err(|e| format!("bind {}: {e}", lease.ip))?;
    let server_ip = lease.next_server;
    let rrq = encode_rrq(
        &lease.boot_file,
        &RequestOptions {
            blksize: Some(plan.blksize),
            windowsize: Some(plan.windowsize),
            tsize: true,
        },
    );
    let mut client = Client::new(ClientParams {
        blksize: plan.blksize,
        windowsize: plan.windowsize,
        options: true,
        timeout: Duration::from_secs(1),
        retries: 6,
        expect_size: None,
    });
    let start = Instant::now();
    let first = client.start(start);
    let mut pending = Some(first);
    let mut buf = vec![0u8; usize::from(plan.blksize) + 64];
    loop {
        if let Some(t) = pending.take() {
            let to = match t.target {
                Target::Listener => SocketAddr::from((server_ip, 69)),
                Target::Tid(port) => SocketAddr::from((server_ip, port)),
            };
            let sent = match t.payload {
                Payload::Rrq => socket.send_to(&rrq, to).await,
                Payload::Ack(b) => socket.send_to(&encode_ack(b), to).await,
            };
            sent.map_err(|e| format!("TFTP send to {to}: {e}"))?;
        }
        match client.state() {
            State::Done => return Ok(start.elapsed()),
            State::Failed(why) => return Err(format!("TFTP {}: {why:?}", lease.boot_file)),
            _ => {}
        }
        let Some(wake) = client.deadline() else {
            return Err("TFTP client stalled".to_owned());
        };
        let wake = tokio::time::Instant::from_std(wake);
        match tokio::time::timeout_at(wake, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from.ip() == server_ip => {
                pending = client.handle(Instant::now(), from.port(), &buf[..n], n);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("TFTP receive: {e}")),
            Err(_) => pending = client.handle_timeout(Instant::now()),
        }
    }
}

/// The iPXE script for `mac`, then every `kernel`/`initrd` URL it names.
async fn http_boot(ip: Ipv4Addr, server: SocketAddrV4, mac: MacAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let (status, script) =
        request(ip, server, "GET", &format!("/boot.ipxe?mac={mac}"), None).await?;
    let script = String::from_utf8_lossy(&script).into_owned();
    if status != 200 || !script.contains("kernel ") {
        return Err(format!("no boot script (HTTP {status}): {}", script.trim()));
    }
    for line in script.lines() {
        let mut words = line.split_whitespace();
        if !matches!(words.next(), Some("kernel" | "initrd")) {
            continue;
        }
        let Some(url) = words.next() else { continue };
        let (host, path) = split_url(url).ok_or_else(|| format!("unusable URL {url}"))?;
        let (status, _) = request(ip, host, "GET", &path, None).await?;
        if status != 200 {
            return Err(format!("GET {url}: HTTP {status}"));
        }
    }
    Ok(start.elapsed())
}

/// `http://A.B.C.D[:port]/path` → address and path.
pub fn split_url(url: &str) -> Option<(SocketAddrV4, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = match host.split_once(':') {
        Some((h, p)) => SocketAddrV4::new(h.parse().ok()?, p.parse().ok()?),
        None => SocketAddrV4::new(host.parse().ok()?, 80),
    };
    Some((addr, format!("/{path}")))
}

/// Bodies up to this size are kept (scripts, errors); longer ones are only counted.
const KEEP: usize = 64 * 1024;

/// One HTTP/1.1 request from `ip` with `Connection: close`: status and (the first 64 KiB of) the
/// body. A `Content-Length` body must arrive whole.
async fn request(
    ip: Ipv4Addr,
    server: SocketAddrV4,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::from((ip, 0)))
        .map_err(|e| format!("bind {ip}: {e}"))?;
    let mut s = socket
        .connect(SocketAddr::V4(server))
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let (status, length, mut kept) = loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{method} {path}: connection closed before the header"
            ));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| format!("{method} {path}: not HTTP: {text:?}"))?;
            let length = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<u64>().ok())?
            });
            break (status, length, head[end + 4..].to_vec());
        }
        if head.len() > KEEP {
            return Err(format!("{method} {path}: header too long"));
        }
    };
    let mut got = kept.len() as u64;
    loop {
        if length.is_some_and(|l| got >= l) {
            break;
        }
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if kept.len() < KEEP {
            kept.extend_from_slice(&buf[..n.min(KEEP - kept.len())]);
        }
    }
    if let Some(l) = length
        && got != l
    {
        return Err(format!("{method} {path}: {got} of {l} body bytes"));
    }
    Ok((status, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        let (a, p) = split_url("http://10.77.0.1:8080/vmlinuz").unwrap();
        assert_eq!(a, "10.77.0.1:8080".parse().unwrap());
        assert_eq!(p, "/vmlinuz");
        assert_eq!(split_url("http://10.0.0.1").unwrap().1, "/");
        assert!(split_url("tftp://10.0.0.1/x").is_none());
        assert!(split_url("http://name:80/x").is_none());
    }
}
