//! The io_uring TFTP driver (`tokio-uring`), and the probe that tells whether io_uring may be
//! used at all.
//!
//! Every receive and send is an io_uring operation. A DATA packet is one `IORING_OP_SENDMSG`
//! with two iovecs: the block's 4-byte header (a slice of a static table) and the slice of the
//! shared file [`Bytes`]; the ring holds a reference to both until the kernel is done, so no
//! byte is copied in userspace. Sends are not awaited one by one: each is a small task, so a
//! whole window is submitted in one `io_uring_enter`.
//!
//! Zero-copy sends (`IORING_OP_SENDMSG_ZC`) are not used. They pay only above about 10 KB per
//! send (kernel `msg_zerocopy` docs), while TFTP blocks are MTU-sized (1468 bytes) except on
//! loopback or jumbo frames; UDP refuses them with `EMSGSIZE` once a block spans more pages
//! than an skb has fragments (a 65464-byte block does); and tokio-uring 0.5 panics when the
//! kernel reports an error in the first of a zero-copy send's two completions.
//!
//! tokio-uring does not cancel an operation when its future is dropped: a receive on a closed
//! transfer's socket would stay in the ring, holding the socket (and its port) open until a
//! datagram arrived. So retiring a socket sends it one empty datagram from the listener's
//! address, which completes the pending receive and lets the socket close.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_uring::net::UdpSocket;
use tracing::debug;

use super::event_loop::{Backend, Inbound, Inbox, IoErrors, Origin, Outgoing, RECEIVE_ERROR_PAUSE};
use super::files::data_header;

/// Submission queue entries of the driver's ring.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// Why io_uring cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct UringUnavailable {
    /// What the kernel said, and the likely cause.
    pub reason: String,
}

/// Try to create a small io_uring instance: the kernel refuses with `ENOSYS` when it lacks
/// io_uring, with `EPERM` when `kernel.io_uring_disabled` or a seccomp filter (Docker's and
/// containerd's default profiles) forbids it.
///
/// # Errors
/// [`UringUnavailable`] with the reason.
pub fn probe() -> Result<(), UringUnavailable> {
    match tokio_uring::uring_builder().build(4) {
        Ok(ring) => {
            drop(ring);
            Ok(())
        }
        Err(e) => Err(UringUnavailable {
            reason: explain(&e, read_disabled_sysctl()),
        }),
    }
}

/// `kernel.io_uring_disabled` (absent before Linux 6.6).
fn read_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A reason for a failed `io_uring_setup`, naming the likely cause.
pub(crate) fn explain(error: &io::Error, disabled_sysctl: Option<u8>) -> String {
    match (error.raw_os_error(), disabled_sysctl) {
        (Some(libc::ENOSYS), _) => "the kernel has no io_uring (ENOSYS)".to_owned(),
        (Some(libc::EPERM), Some(n)) if n > 0 => {
            format!("kernel.io_uring_disabled = {n} (EPERM)")
        }
        (Some(libc::EPERM), _) => {
            "EPERM: blocked by a seccomp filter (container default profile) or a security \
             policy"
                .to_owned()
        }
        (Some(libc::ENOMEM), _) => {
            "ENOMEM: the locked-memory limit (RLIMIT_MEMLOCK) is too low for a ring".to_owned()
        }
        _ => error.to_string(),
    }
}

/// The io_uring socket operations.
#[derive(Debug)]
pub(crate) struct UringBackend {
    errors: Rc<IoErrors>,
    /// Sends the empty datagram that releases a retired socket's pending receive.
    waker: StdUdpSocket,
}

impl UringBackend {
    /// A backend reporting send errors to `errors`; `waker` is a clone of the listening socket.
    pub(crate) fn new(errors: Rc<IoErrors>, waker: StdUdpSocket) -> Self {
        Self { errors, waker }
    }
}

impl Backend for UringBackend {
    type Socket = UdpSocket;

    fn adopt(&self, socket: StdUdpSocket) -> io::Result<Rc<UdpSocket>> {
        // Blocking mode: io_uring then waits for readiness itself instead of failing an
        // operation with EAGAIN.
        socket.set_nonblocking(false)?;
        Ok(Rc::new(UdpSocket::from_std(socket)))
    }

    fn spawn_receiver(
        &self,
        socket: Rc<UdpSocket>,
        origin: Origin,
        buffer: usize,
        inbox: Inbox,
    ) -> JoinHandle<()> {
        tokio_uring::spawn(async move {
            let mut buf = vec![0u8; buffer];
            loop {
                let (result, returned) = socket.recv_from(buf).await;
                buf = returned;
                let message = match result {
                    Ok((n, peer)) => Inbound::Datagram {
                        origin,
                        peer,
                        data: buf[..n].to_vec(),
                    },
                    Err(error) => {
                        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                        Inbound::ReceiveFailed { origin, error }
                    }
                };
                if inbox.send(message).await.is_err() {
                    return;
                }
            }
        })
    }

    fn send(&self, socket: &Rc<UdpSocket>, peer: SocketAddr, packet: Outgoing) {
        let socket = socket.clone();
        let errors = self.errors.clone();
        match packet {
            Outgoing::Encoded(bytes) => {
                tokio_uring::spawn(async move {
                    let (result, _) = socket.send_to(bytes, peer).await;
                    if let Err(e) = result {
                        errors.send_failed(peer, &e);
                    }
                });
            }
            Outgoing::Data { block, payload } => {
                tokio_uring::spawn(async move {
                    // Two iovecs: the block's header and the slice of the shared file.
                    let iov = vec![data_header(block), payload];
                    let (result, _, _) = socket.sendmsg(iov, Some(peer), None::<Bytes>).await;
                    if let Err(e) = result {
                        errors.send_failed(peer, &e);
                    }
                });
            }
        }
    }

    fn retire(&self, socket: Rc<UdpSocket>, local: SocketAddr) {
        drop(socket);
        let target = SocketAddr::new(reachable(local.ip()), local.port());
        if let Err(e) = self.waker.send_to(&[], target) {
            debug!(%target, "cannot release a closed TFTP transfer socket: {e}");
        }
    }
}

/// An address a local socket bound to `ip` can be reached at (loopback for a wildcard).
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_explained() {
        let err = |n| io::Error::from_raw_os_error(n);
        assert_eq!(
            explain(&err(libc::EPERM), Some(2)),
            "kernel.io_uring_disabled = 2 (EPERM)"
        );
        assert!(explain(&err(libc::EPERM), Some(0)).contains("seccomp"));
        assert!(explain(&err(libc::EPERM), None).contains("seccomp"));
        assert!(explain(&err(libc::ENOSYS), None).contains("no io_uring"));
        assert!(explain(&err(libc::ENOMEM), None).contains("RLIMIT_MEMLOCK"));
    }

    #[test]
    fn wildcard_sockets_are_woken_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            reachable("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        let ip: IpAddr = "10.77.0.1".parse().unwrap();
        assert_eq!(reachable(ip), ip);
    }
}
