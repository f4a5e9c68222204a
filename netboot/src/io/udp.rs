//! The relay socket: plain UDP on port 67 for requests forwarded by DHCP relay agents.
//!
//! A relay agent (RFC 1542, RFC 2131 §4.1) sends the client's request as a unicast UDP datagram
//! from its `giaddr` to our port 67, and expects the reply back at its port 67. Clients on a
//! directly served link are handled by the raw sockets ([`super::raw_socket`]); their broadcasts
//! would also reach a UDP socket bound to `0.0.0.0:67`, so a small BPF filter on this socket lets
//! through only datagrams whose `giaddr` is set (relayed) or whose `ciaddr` is set (a client
//! renewing by unicast, which may sit behind a router); the core decides which of those are its.
//!
//! `IP_PKTINFO` is enabled so every datagram comes with the local address it was sent to, which
//! the core uses as the server identifier for that relay.
#![allow(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{
    self, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockAddr, SockFilter, Socket, Type};

/// Offset of `giaddr` in the UDP datagram as the socket filter sees it (8-byte UDP header, then
/// the BOOTP header where `giaddr` is at offset 24).
const GIADDR_OFFSET: u32 = 8 + 24;

/// Receive buffer we ask for (capped by `net.core.rmem_max`).
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Offset of `ciaddr` in the UDP datagram as the socket filter sees it.
const CIADDR_OFFSET: u32 = 8 + 12;

/// Socket filter for the relay socket: accept a datagram only when its `giaddr` is non-zero
/// (relayed) or its `ciaddr` is (a client renewing by unicast, possibly from behind a router).
/// Fresh broadcasts from clients on our links (both zero) are the raw sockets' alone.
///
/// ```text
/// 0: ld [32]         ; giaddr
/// 1: jeq #0, 2, 5
/// 2: ld [20]         ; ciaddr
/// 3: jeq #0, 4, 5
/// 4: ret #0          ; neither: drop
/// 5: ret #0x40000    ; accept
/// ```
fn relayed_only_filter() -> [SockFilter; 6] {
    const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
    const BPF_RET_K: u16 = 0x06;
    [
        SockFilter::new(BPF_LD_W_ABS, 0, 0, GIADDR_OFFSET),
        SockFilter::new(BPF_JMP_JEQ_K, 0, 3, 0),
        SockFilter::new(BPF_LD_W_ABS, 0, 0, CIADDR_OFFSET),
        SockFilter::new(BPF_JMP_JEQ_K, 0, 1, 0),
        SockFilter::new(BPF_RET_K, 0, 0, 0),
        SockFilter::new(BPF_RET_K, 0, 0, 0x0004_0000),
    ]
}

/// A non-blocking UDP socket for relayed DHCP traffic.
#[derive(Debug)]
pub struct RelaySocket {
    socket: Socket,
    local: SocketAddrV4,
}

impl RelaySocket {
    /// Bind the relay socket to `addr` (the daemon uses `0.0.0.0:67`; tests use a loopback
    /// address and port 0) with `SO_REUSEADDR`, `SO_BROADCAST` and `IP_PKTINFO`.
    ///
    /// # Errors
    /// When the address is taken (another DHCP server is running) or the process may not bind
    /// a port below 1024 (needs `CAP_NET_BIND_SERVICE`); the message says which.
    pub fn bind(addr: SocketAddrV4) -> io::Result<Self> {
        let context = |what: &str, err: io::Error| {
            let advice = match err.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => {
                    ": netbootd needs CAP_NET_BIND_SERVICE to bind port 67 (run as root, or grant \
                     it with setcap or systemd AmbientCapabilities)"
                }
                Some(libc::EADDRINUSE) => {
                    ": another DHCP server (dnsmasq, dhcpd, kea) is listening on this port; stop it"
                }
                _ => "",
            };
            io::Error::new(
                err.kind(),
                format!("relay socket {addr}: {what}: {err}{advice}"),
            )
        };
        let socket = Socket::new(
            Domain::IPV4,
            Type::DGRAM.nonblocking().cloexec(),
            Some(Protocol::UDP),
        )
        .map_err(|e| context("creating the UDP socket", e))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| context("setting SO_REUSEADDR", e))?;
        socket
            .set_broadcast(true)
            .map_err(|e| context("setting SO_BROADCAST", e))?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
            .map_err(|e| context("enabling IP_PKTINFO", io::Error::from(e)))?;
        socket
            .attach_filter(&relayed_only_filter())
            .map_err(|e| context("attaching the relay filter", e))?;
        let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
        socket
            .bind(&SockAddr::from(addr))
            .map_err(|e| context("binding", e))?;
        let local = match socket.local_addr().map(|a| a.as_socket()) {
            Ok(Some(SocketAddr::V4(local))) => local,
            _ => addr,
        };
        Ok(Self { socket, local })
    }

    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Receive one datagram into `buf` without blocking: its length (truncated to `buf.len()`),
    /// the sender, and the local address it was sent to; `None` when nothing is queued.
    ///
    /// # Errors
    /// Whatever `recvmsg` reports other than "would block".
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddrV4, Ipv4Addr)>> {
        match self.recv_datagram(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`RelaySocket::recv`], with "nothing queued" as a `WouldBlock` error (the shape
    /// `AsyncFd::try_io` expects).
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued; otherwise as [`RelaySocket::recv`].
    pub fn recv_datagram(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, Ipv4Addr)> {
        let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = loop {
            match recvmsg::<SockaddrIn>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) {
                Ok(msg) => break msg,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let peer = msg
            .address
            .map(|a| SocketAddrV4::new(a.ip(), a.port()))
            .ok_or_else(|| io::Error::other("datagram without a sender address"))?;
        let mut local = *self.local.ip();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                    let dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    let spec = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                    // The header's destination, unless it was a broadcast: then the address
                    // the kernel would answer from.
                    local = if dst.is_broadcast() || dst.is_unspecified() {
                        spec
                    } else {
                        dst
                    };
                }
            }
        }
        Ok((msg.bytes, peer, local))
    }

    /// Send `payload` to `to` without blocking.
    ///
    /// # Errors
    /// `WouldBlock` when the send buffer is full; otherwise whatever `sendto` reports.
    pub fn send_to(&self, payload: &[u8], to: SocketAddrV4) -> io::Result<()> {
        let n = socket::sendto(
            self.socket.as_raw_fd(),
            payload,
            &SockaddrIn::from(to),
            MsgFlags::empty(),
        )?;
        if n == payload.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("relay socket: short write to {to}"),
            ))
        }
    }
}

/// Register a shared relay socket with the current tokio runtime for read readiness.
///
/// # Errors
/// When the runtime's reactor refuses the registration.
///
/// # Panics
/// Outside a tokio runtime.
pub fn register_readable(
    socket: Arc<RelaySocket>,
) -> io::Result<tokio::io::unix::AsyncFd<Arc<RelaySocket>>> {
    // SAFETY: a `RelaySocket` owns its fd (an `OwnedFd` inside `socket2::Socket`) and never
    // closes or replaces it while alive; the `AsyncFd` holds an `Arc` to it, so the fd stays open
    // and `as_raw_fd` returns the same value for the whole lifetime of the registration.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

impl AsRawFd for RelaySocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for RelaySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use super::*;

    /// A minimal BOOTP request with `giaddr` set to `giaddr`.
    fn bootp(giaddr: Ipv4Addr, marker: u8) -> Vec<u8> {
        let mut m = vec![0u8; 300];
        m[0] = 1;
        m[4] = marker;
        m[24..28].copy_from_slice(&giaddr.octets());
        m
    }

    #[allow(clippy::disallowed_methods)]
    fn recv_within(
        sock: &RelaySocket,
        wait: Duration,
    ) -> Option<(Vec<u8>, SocketAddrV4, Ipv4Addr)> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Some((n, peer, local)) = sock.recv(&mut buf).expect("recv") {
                return Some((buf[..n].to_vec(), peer, local));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn only_relayed_datagrams_arrive_with_their_local_address() {
        let sock = RelaySocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let to = sock.local_addr();
        assert_ne!(to.port(), 0);
        let relay = UdpSocket::bind("127.0.0.1:0").expect("client");
        relay
            .send_to(&bootp(Ipv4Addr::UNSPECIFIED, 1), to)
            .expect("send direct");
        relay
            .send_to(&bootp(Ipv4Addr::new(10, 9, 8, 1), 2), to)
            .expect("send relayed");
        let mut renewing = bootp(Ipv4Addr::UNSPECIFIED, 3);
        renewing[12..16].copy_from_slice(&[10, 88, 0, 20]);
        relay.send_to(&renewing, to).expect("send renewing");
        let (payload, peer, local) =
            recv_within(&sock, Duration::from_secs(2)).expect("relayed datagram arrives");
        assert_eq!(
            payload[4], 2,
            "the direct (giaddr 0) datagram was filtered out"
        );
        let (payload, _, _) =
            recv_within(&sock, Duration::from_secs(2)).expect("renewing datagram arrives");
        assert_eq!(
            payload[4], 3,
            "a unicast renewal (ciaddr set) is let through"
        );
        assert_eq!(SocketAddr::V4(peer), relay.local_addr().expect("addr"));
        assert_eq!(local, Ipv4Addr::LOCALHOST);
        assert!(recv_within(&sock, Duration::from_millis(100)).is_none());

        sock.send_to(b"reply", peer).expect("send_to");
        let mut buf = [0u8; 16];
        relay
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let (n, from) = relay.recv_from(&mut buf).expect("reply arrives");
        assert_eq!(&buf[..n], b"reply");
        assert_eq!(from, SocketAddr::V4(to));
    }

    #[test]
    fn busy_port_is_explained() {
        let first = RelaySocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        // SO_REUSEADDR lets two UDP sockets share a port only when both set it; a plain socket
        // without it holding the port makes ours fail.
        let plain = UdpSocket::bind("127.0.0.1:0").expect("plain");
        let port = plain.local_addr().expect("addr").port();
        let err = RelaySocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            .expect_err("port in use");
        assert!(err.to_string().contains("another DHCP server"), "{err}");
        drop(first);
    }
}
