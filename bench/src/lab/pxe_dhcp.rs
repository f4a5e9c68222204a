//! DHCP as PXE firmware does it, for many simulated machines sharing one raw socket.
//!
//! Requests are the load generator's ([`crate::dhcp_load::packet::encode_request`]) with the
//! options UEFI PXE firmware adds: vendor class `PXEClient:Arch:00007:UNDI:003016` (60), client
//! architecture (93), network interface id (94), machine UUID (97), maximum message size (57)
//! and the parameter request list EDK2 sends (55). [`Dhcp`] owns one AF_PACKET socket on the
//! client interface; a receive task routes each reply to the machine waiting for its
//! transaction id. [`Dhcp::dora`] runs DISCOVER → OFFER → REQUEST → ACK with PXE's growing
//! retransmission timeouts, bounded in tries.
#![allow(clippy::disallowed_methods)] // an I/O driver: real timeouts

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ims_netboot::io::raw_socket::{PacketType, RawSocket};
use ims_proto::MacAddr;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::dhcp_load::packet::{
    Addressing, CLIENT_PORT, ReplyKind, Request, decode_reply, encode_broadcast_frame,
    encode_request, udp_payload_to_port,
};

/// Client system architecture (RFC 4578 option 93): 0 BIOS, 7 UEFI x64.
pub const ARCH_UEFI_X64: u16 = 7;
/// Timeouts of the sends of one phase (DISCOVER or REQUEST), as PXE firmware grows them.
const TRIES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];
/// The error text of a DHCPNAK.
const NAK: &str = "DHCPNAK";
/// DORAs restarted after a NAK before the machine gives up.
const NAK_RESTARTS: u32 = 20;
/// Parameter request list of EDK2's PXE driver.
const PARAMS: [u8; 35] = [
    1, 2, 3, 4, 5, 6, 11, 12, 13, 15, 16, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59,
    60, 66, 67, 97, 128, 129, 130, 131, 132, 133,
];

/// What a machine got from its ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Where to fetch the boot file (option 66, else `siaddr`, else the server identifier).
    pub next_server: Ipv4Addr,
    /// The boot file name (option 67, else the `file` field).
    pub boot_file: String,
}

/// The PXE options added to a BOOTREQUEST built by the load generator: every option but 55 is
/// kept, then 55 (EDK2's list), 57, 60, 93, 94 and 97 follow, then END and padding to 300 bytes.
pub fn add_pxe_options(request: &[u8], mac: MacAddr, arch: u16) -> Vec<u8> {
    let mut out = request.get(..240).unwrap_or(request).to_vec();
    let mut i = 240;
    while let Some(&code) = request.get(i) {
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = request.get(i + 1) else {
                    break;
                };
                let end = i + 2 + usize::from(len);
                let Some(opt) = request.get(i..end) else {
                    break;
                };
                if code != 55 {
                    out.extend_from_slice(opt);
                }
                i = end;
            }
        }
    }
    out.extend_from_slice(&[55, PARAMS.len() as u8]);
    out.extend_from_slice(&PARAMS);
    out.extend_from_slice(&[57, 2, 0x05, 0xc0]); // 1472
    let class = format!("PXEClient:Arch:{arch:05}:UNDI:003016");
    out.extend_from_slice(&[60, class.len() as u8]);
    out.extend_from_slice(class.as_bytes());
    out.extend_from_slice(&[93, 2]);
    out.extend_from_slice(&arch.to_be_bytes());
    out.extend_from_slice(&[94, 3, 1, 3, 16]);
    let mut uuid = [0u8; 16];
    uuid[10..].copy_from_slice(&mac.octets());
    out.extend_from_slice(&[97, 17, 0]);
    out.extend_from_slice(&uuid);
    out.push(255);
    if out.len() < 300 {
        out.resize(300, 0);
    }
    out
}

/// The boot file and next server of a BOOTREPLY (see [`Lease`]); `None` for a reply without a
/// boot file or too short to hold the BOOTP header.
pub fn boot_info(reply: &[u8], yiaddr: Ipv4Addr, server_id: Option<Ipv4Addr>) -> Option<Lease> {
    let header = reply.get(..240)?;
    let siaddr = Ipv4Addr::new(header[20], header[21], header[22], header[23]);
    let file_field = &header[108..236];
    let mut file = String::from_utf8_lossy(
        &file_field[..file_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(file_field.len())],
    )
    .into_owned();
    let mut tftp_server: Option<Ipv4Addr> = None;
    let mut i = 240;
    while let Some(&code) = reply.get(i) {
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let len = usize::from(*reply.get(i + 1)?);
                let value = reply.get(i + 2..i + 2 + len)?;
                let text = String::from_utf8_lossy(value);
                let text = text.trim_end_matches('\0');
                match code {
                    67 => file = text.to_owned(),
                    66 => tftp_server = text.parse().ok(),
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
    if file.is_empty() {
        return None;
    }
    let next_server = tftp_server
        .or((!siaddr.is_unspecified()).then_some(siaddr))
        .or(server_id)?;
    Some(Lease {
        ip: yiaddr,
        next_server,
        boot_file: file,
    })
}

type Waiters = Mutex<BTreeMap<u32, mpsc::UnboundedSender<Vec<u8>>>>;

/// The shared raw socket and the machines waiting for replies.
#[derive(Debug)]
pub struct Dhcp {
    socket: AsyncFd<RawSocket>,
    waiters: Waiters,
    arch: u16,
    naks: AtomicU64,
}

impl Dhcp {
    /// Open the raw socket on `ifname` (in the calling thread's namespace) inside a Tokio
    /// runtime, and start the receive task.
    ///
    /// # Errors
    /// The socket cannot be opened (no such interface, not root).
    pub fn open(ifname: &str, arch: u16) -> io::Result<Arc<Self>> {
        let raw = RawSocket::open_with_port(ifname, CLIENT_PORT)?;
        // `AsyncFd::new` is deprecated because a type could close its fd while registered; a
        // `RawSocket` owns its fd (inside `socket2::Socket`) until it is dropped with the
        // `AsyncFd`, so the registration stays valid (and this crate forbids `unsafe`).
        #[allow(deprecated)]
        let socket = AsyncFd::new(raw)?;
        let dhcp = Arc::new(Self {
            socket,
            waiters: Mutex::new(BTreeMap::new()),
            arch,
            naks: AtomicU64::new(0),
        });
        let rx = Arc::clone(&dhcp);
        tokio::spawn(async move { rx.receive().await });
        Ok(dhcp)
    }

    /// NAKs received (and DORAs restarted) since the last call; resets the count.
    pub fn take_naks(&self) -> u64 {
        self.naks.swap(0, Ordering::Relaxed)
    }

    async fn receive(&self) {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok(mut guard) = self.socket.readable().await else {
                return;
            };
            let got = guard.try_io(|s| s.get_ref().recv_frame(&mut buf));
            let (n, kind) = match got {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            };
            if kind == PacketType::Outgoing {
                continue;
            }
            let Some(payload) = udp_payload_to_port(&buf[..n], CLIENT_PORT) else {
                continue;
            };
            let Ok(reply) = decode_reply(payload) else {
                continue;
            };
            let waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(tx) = waiters.get(&reply.xid) {
                let _ = tx.send(payload.to_vec());
            }
        }
    }

    async fn send(&self, frame: &[u8]) -> Result<(), String> {
        for _ in 0..1000 {
            match self.socket.get_ref().send(frame) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(nix::libc::ENOBUFS) =>
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(format!("sending a DHCP request: {e}")),
            }
        }
        Err("the raw socket's send buffer stayed full for a second".to_owned())
    }

    /// One DORA for `mac` with transaction id `xid`: the lease with its boot file.
    ///
    /// # Errors
    /// No OFFER or ACK after every try, a NAK, or an ACK without a boot file (text for the
    /// report).
    pub async fn dora(&self, mac: MacAddr, xid: u32) -> Result<Lease, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(xid, tx);
        let result = self.exchange(mac, xid, &mut rx).await;
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&xid);
        result
    }

    /// DORA; a NAK (another client was offered the same address, as dnsmasq does under
    /// load) restarts it from DISCOVER, as PXE firmware does, at most [`NAK_RESTARTS`] times.
    async fn exchange(
        &self,
        mac: MacAddr,
        xid: u32,
        rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    ) -> Result<Lease, String> {
        let mut naks = 0;
        loop {
            let offer = self
                .phase(mac, xid, Request::Discover, ReplyKind::Offer, rx)
                .await?;
            let offered = decode_reply(&offer).map_err(|e| e.to_string())?;
            let select = Request::Select {
                offered: offered.yiaddr,
                server_id: offered.server_id,
            };
            match self.phase(mac, xid, select, ReplyKind::Ack, rx).await {
                Ok(ack) => {
                    let acked = decode_reply(&ack).map_err(|e| e.to_string())?;
                    return boot_info(&ack, acked.yiaddr, acked.server_id)
                        .ok_or_else(|| format!("the ACK for {} has no boot file", acked.yiaddr));
                }
                Err(e) if e == NAK && naks < NAK_RESTARTS => {
                    naks += 1;
                    self.naks.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Send `request` until a reply of kind `want` arrives (NAK fails at once).
    async fn phase(
        &self,
        mac: MacAddr,
        xid: u32,
        request: Request,
        want: ReplyKind,
        rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        let payload = add_pxe_options(
            &encode_request(request, mac, xid, Addressing::Direct),
            mac,
            self.arch,
        );
        let frame = encode_broadcast_frame(mac, &payload);
        for wait in TRIES {
            self.send(&frame).await?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => break,
                    Ok(None) => return Err("the DHCP receive task stopped".to_owned()),
                    Ok(Some(bytes)) => match decode_reply(&bytes).map(|r| r.kind) {
                        Ok(k) if k == want => return Ok(bytes),
                        Ok(ReplyKind::Nak) => return Err(NAK.to_owned()),
                        _ => {}
                    },
                }
            }
        }
        let what = if want == ReplyKind::Offer {
            "OFFER"
        } else {
            "ACK"
        };
        Err(format!("no {what} after {} tries", TRIES.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pxe_options_are_added_and_parsed_back() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let req = encode_request(Request::Discover, mac, 7, Addressing::Direct);
        let pxe = add_pxe_options(&req, mac, ARCH_UEFI_X64);
        let text = String::from_utf8_lossy(&pxe);
        assert!(text.contains("PXEClient:Arch:00007:UNDI:003016"));
        assert!(pxe.len() >= 300);
        // Still a valid request for the generator's own decoder shape (op 1, magic).
        assert_eq!(pxe[0], 1);
        assert_eq!(&pxe[236..240], &[99, 130, 83, 99]);
        // A reply with option 67 and siaddr.
        let mut reply = vec![0u8; 240];
        reply[0] = 2;
        reply[20..24].copy_from_slice(&[10, 77, 0, 1]);
        reply[236..240].copy_from_slice(&[99, 130, 83, 99]);
        reply.extend_from_slice(&[53, 1, 5, 67, 8]);
        reply.extend_from_slice(b"ipxe.efi");
        reply.push(255);
        let lease = boot_info(&reply, Ipv4Addr::new(10, 77, 128, 1), None).unwrap();
        assert_eq!(lease.boot_file, "ipxe.efi");
        assert_eq!(lease.next_server, Ipv4Addr::new(10, 77, 0, 1));
        // No boot file: none; truncated: none, never a panic.
        assert_eq!(boot_info(&reply[..245], Ipv4Addr::UNSPECIFIED, None), None);
        assert_eq!(boot_info(&reply[..100], Ipv4Addr::UNSPECIFIED, None), None);
    }
}
