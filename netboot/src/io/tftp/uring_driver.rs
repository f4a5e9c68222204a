//! The io_uring TFTP driver (`tokio-uring`), and the probe that tells whether io_uring may be
//! used at all.
//!
//! Every receive and send is an io_uring operation. DATA is an `IORING_OP_SENDMSG` whose
//! iovecs alternate the blocks' 4-byte headers (slices of a static table) and slices of the
//! shared file [`Bytes`]; the ring holds a reference to them until the kernel is done, so no
//! byte is copied in userspace. A window goes out as GSO sends of up to
//! `gso::segments_per_send` blocks each (one `UDP_SEGMENT` control message), or packet by
//! packet on a socket whose GSO send was refused (see `gso`). Sends are not awaited one by one:
//! each is a small task, so a whole window is submitted in one `io_uring_enter`.
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

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_uring::net::UdpSocket;
use tracing::debug;

use super::event_loop::{Backend, IoErrors, Origin, Outgoing, RECEIVE_ERROR_PAUSE};
use super::files::data_header;
use super::gso::{DataRun, GsoControl, is_gso_refusal};
use super::receive::{Batch, ReceiveQueue};

/// Submission queue entries of the driver's ring.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// The driver's runtime: a ring of [`RING_ENTRIES`] set up with `IORING_SETUP_COOP_TASKRUN`
/// and `IORING_SETUP_TASKRUN_FLAG` (Linux 5.19), or without them where the kernel refuses them
/// (`EINVAL`).
///
/// Without `COOP_TASKRUN` every completion the network receive path produces on another CPU
/// interrupts the driver thread with a reschedule IPI so that it runs the completion at once;
/// on a VM that IPI is expensive (it halved the driver's throughput in the TFTP storm). With it
/// completions wait until the thread next enters the kernel, which it does constantly (every
/// submission, every `epoll_wait`), and a sleeping thread is still woken.
///
/// `IORING_SETUP_DEFER_TASKRUN` would save more but does not work with tokio-uring 0.5: it
/// reaps completions when the ring's descriptor turns readable, without entering the kernel
/// with `IORING_ENTER_GETEVENTS`, so deferred completions are never posted and transfers stall
/// (tried).
pub(crate) fn runtime() -> io::Result<tokio_uring::Runtime> {
    let mut builder = tokio_uring::builder();
    builder.entries(RING_ENTRIES);
    builder.uring_builder(
        tokio_uring::uring_builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag(),
    );
    match tokio_uring::Runtime::new(&builder) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            debug!("io_uring refuses COOP_TASKRUN ({e}): a plain ring");
            let mut builder = tokio_uring::builder();
            builder.entries(RING_ENTRIES);
            tokio_uring::Runtime::new(&builder)
        }
        other => other,
    }
}

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
/// The ring is made and dropped on a short-lived thread of its own, never on the caller's:
/// `io_uring_setup` registers the creating thread with the ring, and the ring's teardown (run
/// later from a kernel workqueue) queues task work on every registered thread with
/// `TWA_SIGNAL`. That interrupts whatever blocking call the thread is in at that moment: a
/// `recvfrom` with a receive timeout fails with `EINTR`, a `sleep` wakes early. Seen as
/// downloads failing with "Interrupted system call" right after a probe on a loaded machine.
///
/// # Errors
/// [`UringUnavailable`] with the reason.
pub fn probe() -> Result<(), UringUnavailable> {
    let attempt = std::thread::Builder::new()
        .name("io_uring-probe".to_owned())
        .spawn(|| tokio_uring::uring_builder().build(4).map(drop))
        .and_then(|prober| {
            prober
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the io_uring probe thread panicked")))
        });
    attempt.map_err(|e| UringUnavailable {
        reason: explain(&e, read_disabled_sysctl()),
    })
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

/// A tokio-uring UDP socket and whether it still tries GSO.
pub(crate) struct UringSocket {
    socket: UdpSocket,
    /// GSO sends are tried (cleared for good at the first refusal).
    gso: Cell<bool>,
}

impl std::fmt::Debug for UringSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringSocket")
            .field("gso", &self.gso.get())
            .finish_non_exhaustive()
    }
}

/// The io_uring socket operations.
#[derive(Debug)]
pub(crate) struct UringBackend {
    errors: Rc<IoErrors>,
    /// Where the receiver tasks (one per socket) put datagrams for the loop.
    queue: Rc<ReceiveQueue>,
    /// Sends the empty datagram that releases a retired socket's pending receive.
    waker: StdUdpSocket,
}

impl UringBackend {
    /// A backend reporting send errors to `errors`; `waker` is a clone of the listening socket.
    pub(crate) fn new(errors: Rc<IoErrors>, waker: StdUdpSocket) -> Self {
        Self {
            errors,
            queue: Rc::default(),
            waker,
        }
    }
}

impl Backend for UringBackend {
    type Socket = UringSocket;
    type Watch = JoinHandle<()>;

    fn adopt(&self, socket: StdUdpSocket) -> io::Result<Rc<UringSocket>> {
        // Blocking mode: io_uring then waits for readiness itself instead of failing an
        // operation with EAGAIN.
        socket.set_nonblocking(false)?;
        Ok(Rc::new(UringSocket {
            socket: UdpSocket::from_std(socket),
            gso: Cell::new(true),
        }))
    }

    fn watch(
        &self,
        socket: &Rc<UringSocket>,
        origin: Origin,
        buffer: usize,
    ) -> io::Result<JoinHandle<()>> {
        let socket = socket.clone();
        let queue = self.queue.clone();
        Ok(tokio_uring::spawn(async move {
            let mut buf = vec![0u8; buffer];
            loop {
                let (result, returned) = socket.socket.recv_from(buf).await;
                buf = returned;
                match result {
                    Ok((n, peer)) => queue.post(origin, Ok((peer, &buf[..n]))).await,
                    Err(error) => {
                        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                        queue.post(origin, Err(error)).await;
                    }
                }
            }
        }))
    }

    async fn receive(&self, batch: &mut Batch) {
        self.queue.take(batch).await;
    }

    fn send(&self, socket: &Rc<UringSocket>, peer: SocketAddr, packet: Outgoing) {
        match packet {
            Outgoing::Encoded(bytes) => {
                let socket = socket.clone();
                let errors = self.errors.clone();
                tokio_uring::spawn(async move {
                    let (result, _) = socket.socket.send_to(bytes, peer).await;
                    if let Err(e) = result {
                        errors.send_failed(peer, &e);
                    }
                });
            }
            Outgoing::Data(mut run) => {
                let per_send = run.blocks_per_send(socket.gso.get());
                while run.count > 0 {
                    let chunk = run.take_front(per_send);
                    tokio_uring::spawn(send_blocks(
                        socket.clone(),
                        peer,
                        chunk,
                        self.errors.clone(),
                    ));
                }
            }
        }
    }

    fn retire(&self, socket: Rc<UringSocket>, watch: Option<JoinHandle<()>>, local: SocketAddr) {
        if let Some(receiver) = watch {
            receiver.abort();
        }
        drop(socket);
        let target = SocketAddr::new(reachable(local.ip()), local.port());
        if let Err(e) = self.waker.send_to(&[], target) {
            debug!(%target, "cannot release a closed TFTP transfer socket: {e}");
        }
    }
}

/// Send `run` to `peer`: one GSO send when it has several blocks (falling back to one send per
/// block, for good, when the kernel refuses), else one `sendmsg` of header and payload.
async fn send_blocks(
    socket: Rc<UringSocket>,
    peer: SocketAddr,
    run: DataRun,
    errors: Rc<IoErrors>,
) {
    if run.count > 1 {
        let control = Bytes::from_owner(GsoControl::new(run.segment_size()));
        let (result, _, _) = socket
            .socket
            .sendmsg(run.buffers(), Some(peer), Some(control))
            .await;
        match result {
            Ok(_) => return,
            Err(e) if is_gso_refusal(&e) => {
                debug!(%peer, "UDP GSO refused ({e}): this transfer sends packet by packet");
                socket.gso.set(false);
            }
            Err(e) => {
                errors.send_failed(peer, &e);
                return;
            }
        }
    }
    for i in 0..run.count {
        let iov = vec![data_header(run.block(i)), run.payload.slice(run.range(i))];
        let (result, _, _) = socket.socket.sendmsg(iov, Some(peer), None::<Bytes>).await;
        if let Err(e) = result {
            errors.send_failed(peer, &e);
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

    /// A probe leaves the calling thread alone: a blocking receive right after it times out
    /// as asked instead of failing with `EINTR` when the probed ring is torn down.
    #[test]
    fn a_probe_does_not_interrupt_the_caller() {
        if probe().is_err() {
            eprintln!("io_uring unavailable: skipped");
            return;
        }
        let socket = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        for _ in 0..3 {
            assert!(probe().is_ok());
            let mut buf = [0u8; 16];
            let err = socket.recv_from(&mut buf).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::WouldBlock,
                "the receive must time out, not be interrupted: {err}"
            );
        }
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

#[cfg(test)]
mod send_tests {
    use std::time::Duration;

    use super::*;
    use crate::io::tftp::gso::tests::{loopback_run, receive_run, refuse_gso};

    /// Send a run of 51 blocks over loopback with the io_uring backend (two GSO sends, or 51
    /// sends when `refused`) and check every datagram. Skipped where io_uring is refused.
    fn send_a_run(refused: bool) {
        if probe().is_err() {
            eprintln!("io_uring unavailable: skipped");
            return;
        }
        tokio_uring::start(async {
            let (receiver, run) = loopback_run();
            let to = receiver.local_addr().unwrap();
            let expected = run.clone();
            let checker = std::thread::spawn(move || receive_run(&receiver, &expected));
            let waker = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            let backend = UringBackend::new(Rc::new(IoErrors::default()), waker);
            let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            if refused {
                refuse_gso(&std);
            }
            let socket = backend.adopt(std).unwrap();
            backend.send(&socket, to, Outgoing::Data(run));
            while !checker.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            checker.join().unwrap();
            assert_eq!(socket.gso.get(), !refused);
        });
    }

    #[test]
    fn windows_go_out_as_gso_sends() {
        send_a_run(false);
    }

    #[test]
    fn a_refused_gso_send_falls_back_to_one_send_per_block() {
        send_a_run(true);
    }
}
