//! The readiness-based TFTP driver on plain tokio, for kernels or containers where io_uring is
//! refused, or on request.
//!
//! Receiving: every socket (the listener and each transfer's own, all non-blocking) is in one
//! level-triggered epoll set (`epoll`) that tokio's reactor watches. [`Backend::receive`]
//! fetches the ready sockets in one `epoll_wait` and reads one datagram from each (up to
//! [`LISTENER_READS`] from the listener), straight into the loop's batch: no task, wake-up or
//! message per datagram, and no `recvfrom` that only returns `EAGAIN`.
//!
//! Sending: DATA leaves through `socket2`'s `sendmsg` with iovecs pointing into the shared file
//! (the 4-byte headers come from a static table): no copy into a per-client buffer. A run of
//! blocks (a window) goes out as GSO sends of up to `gso::segments_per_send` blocks each, or
//! packet by packet on a socket whose GSO send was refused (see `gso`). The send is tried
//! directly; only when the socket buffer is full does the rest wait, in a per-socket backlog,
//! and the socket is watched for room too until the backlog is out (a retired socket stays
//! open until then).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsFd;
use std::rc::Rc;

use socket2::{MsgHdr, SockAddr, SockRef};
use tracing::{debug, warn};

use super::epoll::{Epoll, Ready, Watch};
use super::event_loop::{Backend, IoErrors, Origin, Outgoing, RECEIVE_ERROR_PAUSE};
use super::files::data_header_slice;
use super::gso::{DataRun, GsoControl, MAX_SEGMENTS, is_gso_refusal};
use super::receive::Batch;

/// Most datagrams read from the listening socket per readiness report (a burst of requests);
/// a transfer socket gets one read per report (it rarely holds more than one ACK).
const LISTENER_READS: usize = 16;

const READ: Watch = Watch {
    read: true,
    write: false,
};
const READ_WRITE: Watch = Watch {
    read: true,
    write: true,
};
const WRITE: Watch = Watch {
    read: false,
    write: true,
};

/// A non-blocking UDP socket with its send backlog.
#[derive(Debug)]
pub(crate) struct TokioSocket {
    socket: StdUdpSocket,
    /// Packets waiting for room in the socket buffer, oldest first.
    backlog: RefCell<VecDeque<(SocketAddr, Outgoing)>>,
    /// The backlog is not empty: new packets queue behind it.
    blocked: Cell<bool>,
    /// GSO sends are tried (cleared for good at the first refusal).
    gso: Cell<bool>,
    /// Its token in the epoll set, while watched.
    token: Cell<Option<u64>>,
}

/// A socket in the epoll set.
#[derive(Debug)]
struct Watched {
    socket: Rc<TokioSocket>,
    origin: Origin,
    /// Receive buffer size.
    buffer: usize,
    /// Still receiving (false once retired: only its backlog keeps it).
    receiving: bool,
}

/// The tokio socket operations.
#[derive(Debug)]
pub(crate) struct TokioBackend {
    errors: Rc<IoErrors>,
    epoll: Epoll,
    /// Sockets in the set, by token.
    watched: RefCell<BTreeMap<u64, Watched>>,
    /// Readiness of the last fetch.
    ready: RefCell<Vec<Ready>>,
    /// Where datagrams are read before they are appended to the batch.
    scratch: RefCell<Vec<u8>>,
}

/// The epoll token of `origin`'s socket: a transfer's id, `u64::MAX` for the listener.
fn token(origin: Origin) -> u64 {
    match origin {
        Origin::Listener => u64::MAX,
        Origin::Transfer(id) => id.0,
    }
}

impl TokioBackend {
    /// A backend reporting send errors to `errors` (within the tokio runtime: the epoll set
    /// registers with its reactor).
    ///
    /// # Errors
    /// When the epoll set cannot be created.
    pub(crate) fn new(errors: Rc<IoErrors>) -> io::Result<Self> {
        Ok(Self {
            errors,
            epoll: Epoll::new()?,
            watched: RefCell::default(),
            ready: RefCell::default(),
            scratch: RefCell::new(vec![0; super::event_loop::LISTENER_BUFFER]),
        })
    }

    /// Read what `ready` reports into `batch`, flush backlogs that have room.
    fn serve(&self, ready: Ready, batch: &mut Batch) {
        let Some((socket, origin, buffer, receiving)) = self
            .watched
            .borrow()
            .get(&ready.token)
            .map(|w| (w.socket.clone(), w.origin, w.buffer, w.receiving))
        else {
            return;
        };
        if ready.writable && socket.blocked.get() {
            self.flush(ready.token, &socket);
        }
        if !(ready.readable && receiving) {
            return;
        }
        let reads = match origin {
            Origin::Listener => LISTENER_READS,
            Origin::Transfer(_) => 1,
        };
        let mut scratch = self.scratch.borrow_mut();
        let len = buffer.min(scratch.len());
        for _ in 0..reads {
            match socket.socket.recv_from(&mut scratch[..len]) {
                Ok((n, peer)) => batch.push(origin, peer, &scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    batch.failed(origin, e);
                    break;
                }
            }
            if batch.is_full() {
                break;
            }
        }
    }

    /// Send `socket`'s backlog while there is room; once it is out, stop watching for room
    /// (and let a retired socket go).
    fn flush(&self, token: u64, socket: &Rc<TokioSocket>) {
        loop {
            let next = socket.backlog.borrow_mut().pop_front();
            let Some((peer, mut packet)) = next else {
                break;
            };
            if !socket.send_now(peer, &mut packet, &self.errors) {
                socket.backlog.borrow_mut().push_front((peer, packet));
                return;
            }
        }
        socket.blocked.set(false);
        let receiving = self.watched.borrow().get(&token).map(|w| w.receiving);
        let result = match receiving {
            Some(true) => self.epoll.modify(socket.socket.as_fd(), token, READ),
            Some(false) => {
                self.watched.borrow_mut().remove(&token);
                self.epoll.delete(socket.socket.as_fd())
            }
            None => Ok(()),
        };
        if let Err(e) = result {
            debug!("TFTP socket watch change failed: {e}");
        }
    }

    /// Watch a blocked socket for room; when that fails its backlog cannot leave: drop it.
    fn wait_for_room(&self, socket: &TokioSocket) {
        let result = match socket.token.get() {
            Some(token) => {
                let receiving = self
                    .watched
                    .borrow()
                    .get(&token)
                    .is_some_and(|w| w.receiving);
                let watch = if receiving { READ_WRITE } else { WRITE };
                self.epoll.modify(socket.socket.as_fd(), token, watch)
            }
            None => Err(io::Error::other("the socket is not watched")),
        };
        if let Err(e) = result {
            for (peer, _) in socket.backlog.borrow_mut().drain(..) {
                self.errors.send_failed(peer, &e);
            }
            socket.blocked.set(false);
        }
    }
}

impl Backend for TokioBackend {
    type Socket = TokioSocket;
    type Watch = u64;

    fn adopt(&self, socket: StdUdpSocket) -> io::Result<Rc<TokioSocket>> {
        socket.set_nonblocking(true)?;
        Ok(Rc::new(TokioSocket {
            socket,
            backlog: RefCell::default(),
            blocked: Cell::new(false),
            gso: Cell::new(true),
            token: Cell::new(None),
        }))
    }

    fn watch(&self, socket: &Rc<TokioSocket>, origin: Origin, buffer: usize) -> io::Result<u64> {
        let token = token(origin);
        self.epoll.add(socket.socket.as_fd(), token, READ)?;
        socket.token.set(Some(token));
        self.watched.borrow_mut().insert(
            token,
            Watched {
                socket: socket.clone(),
                origin,
                buffer,
                receiving: true,
            },
        );
        Ok(token)
    }

    async fn receive(&self, batch: &mut Batch) {
        loop {
            let mut guard = match self.epoll.readable().await {
                Ok(guard) => guard,
                Err(e) => {
                    warn!("TFTP: waiting for the sockets failed: {e}");
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    continue;
                }
            };
            let mut ready = std::mem::take(&mut *self.ready.borrow_mut());
            ready.clear();
            match self.epoll.fetch(&mut ready) {
                Ok(0) => guard.clear_ready(),
                Ok(_) => {
                    for r in &ready {
                        self.serve(*r, batch);
                        if batch.is_full() {
                            // The rest stay ready (level-triggered): next time.
                            break;
                        }
                    }
                }
                Err(e) => {
                    warn!("TFTP: polling the sockets failed: {e}");
                    drop(guard);
                    *self.ready.borrow_mut() = ready;
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    continue;
                }
            }
            *self.ready.borrow_mut() = ready;
            if !batch.is_empty() {
                return;
            }
        }
    }

    fn send(&self, socket: &Rc<TokioSocket>, peer: SocketAddr, mut packet: Outgoing) {
        if socket.blocked.get() {
            socket.backlog.borrow_mut().push_back((peer, packet));
            return;
        }
        if !socket.send_now(peer, &mut packet, &self.errors) {
            socket.backlog.borrow_mut().push_back((peer, packet));
            socket.blocked.set(true);
            self.wait_for_room(socket);
        }
    }

    fn retire(&self, socket: Rc<TokioSocket>, watch: Option<u64>, _local: SocketAddr) {
        let Some(token) = watch else {
            return;
        };
        let result = if socket.blocked.get() {
            // Stop receiving; the backlog keeps the socket until it is out.
            if let Some(w) = self.watched.borrow_mut().get_mut(&token) {
                w.receiving = false;
            }
            self.epoll.modify(socket.socket.as_fd(), token, WRITE)
        } else {
            self.watched.borrow_mut().remove(&token);
            self.epoll.delete(socket.socket.as_fd())
        };
        if let Err(e) = result {
            debug!("TFTP socket watch change failed: {e}");
        }
    }
}

impl TokioSocket {
    /// Send as much of `packet` as the socket buffer takes now. `false`: the buffer is full and
    /// `packet` holds what is left to send. Other failures are reported to `errors` and the
    /// packets concerned dropped (the core retransmits).
    fn send_now(&self, peer: SocketAddr, packet: &mut Outgoing, errors: &IoErrors) -> bool {
        let addr = SockAddr::from(peer);
        match packet {
            Outgoing::Encoded(bytes) => match SockRef::from(&self.socket).send_to(bytes, &addr) {
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) => {
                    errors.send_failed(peer, &e);
                    true
                }
            },
            Outgoing::Data(run) => {
                while run.count > 0 {
                    let n = run.blocks_per_send(self.gso.get());
                    match send_blocks(&self.socket, &addr, run, n) {
                        Ok(_) => run.advance(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                        Err(e) if n > 1 && is_gso_refusal(&e) => {
                            debug!(%peer, "UDP GSO refused ({e}): this transfer sends packet by packet");
                            self.gso.set(false);
                        }
                        Err(e) => {
                            errors.send_failed(peer, &e);
                            run.advance(n);
                        }
                    }
                }
                true
            }
        }
    }
}

/// One non-blocking `sendmsg` of the first `n` blocks of `run` (`n ≤ MAX_SEGMENTS`): iovecs
/// header, payload, header, …; with a `UDP_SEGMENT` control message when `n > 1`.
fn send_blocks(
    socket: &StdUdpSocket,
    addr: &SockAddr,
    run: &DataRun,
    n: usize,
) -> io::Result<usize> {
    let n = n.min(MAX_SEGMENTS).min(run.count);
    if n <= 1 {
        // One block (window 1, the common case): no control message, no iovec table to clear.
        let iov = [
            IoSlice::new(data_header_slice(run.block(0))),
            IoSlice::new(&run.payload[run.range(0)]),
        ];
        return SockRef::from(socket).sendmsg(&MsgHdr::new().with_addr(addr).with_buffers(&iov), 0);
    }
    let mut iov = [IoSlice::new(&[]); 2 * MAX_SEGMENTS];
    for i in 0..n {
        iov[2 * i] = IoSlice::new(data_header_slice(run.block(i)));
        iov[2 * i + 1] = IoSlice::new(&run.payload[run.range(i)]);
    }
    let control = GsoControl::new(run.segment_size());
    let message = MsgHdr::new()
        .with_addr(addr)
        .with_buffers(&iov[..2 * n])
        .with_control(control.as_ref());
    SockRef::from(socket).sendmsg(&message, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::tftp::event_loop::{LISTENER_BUFFER, TRANSFER_BUFFER};
    use crate::io::tftp::gso::tests::{loopback_run, receive_run, refuse_gso};
    use crate::io::tftp::receive::Received;
    use crate::tftp::TransferId;

    /// Send a run of 51 blocks over loopback (two GSO sends, or 51 sends when `refused`) and
    /// check every datagram.
    fn send_a_run(refused: bool) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let (receiver, run) = loopback_run();
            let backend = TokioBackend::new(Rc::new(IoErrors::default())).unwrap();
            let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            if refused {
                refuse_gso(&std);
            }
            let socket = backend.adopt(std).unwrap();
            let to = receiver.local_addr().unwrap();
            backend.send(&socket, to, Outgoing::Data(run.clone()));
            backend.send(&socket, to, Outgoing::Encoded(b"after".to_vec()));
            // The loopback socket buffer takes the whole run at once.
            assert!(!socket.blocked.get());
            receive_run(&receiver, &run);
            let mut buf = [0u8; 16];
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"after", "sent in order");
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

    fn on_runtime(test: impl Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test);
    }

    fn bound(backend: &TokioBackend) -> (Rc<TokioSocket>, SocketAddr) {
        let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        (backend.adopt(std).unwrap(), addr)
    }

    /// The datagrams of `batch`, sorted (the order across sockets is the kernel's).
    fn datagrams(batch: &Batch) -> Vec<(Origin, Vec<u8>)> {
        let mut got: Vec<(Origin, Vec<u8>)> = batch
            .entries()
            .iter()
            .map(|e| match e {
                Received::Datagram { origin, range, .. } => (*origin, batch.bytes(range).to_vec()),
                Received::Failed { error, .. } => panic!("{error}"),
            })
            .collect();
        got.sort_by_key(|(origin, data)| (token(*origin), data.clone()));
        got
    }

    #[test]
    fn every_ready_socket_is_read_in_one_batch() {
        on_runtime(async {
            let backend = TokioBackend::new(Rc::new(IoErrors::default())).unwrap();
            let (listener, listener_addr) = bound(&backend);
            let (transfer, transfer_addr) = bound(&backend);
            backend
                .watch(&listener, Origin::Listener, LISTENER_BUFFER)
                .unwrap();
            let five = Origin::Transfer(TransferId(5));
            let watch = backend.watch(&transfer, five, TRANSFER_BUFFER).unwrap();
            let client = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            client.send_to(b"rrq1", listener_addr).unwrap();
            client.send_to(b"rrq2", listener_addr).unwrap();
            client.send_to(&[0, 4, 0, 1], transfer_addr).unwrap();
            let mut batch = Batch::default();
            backend.receive(&mut batch).await;
            assert_eq!(
                datagrams(&batch),
                [
                    (five, vec![0, 4, 0, 1]),
                    (Origin::Listener, b"rrq1".to_vec()),
                    (Origin::Listener, b"rrq2".to_vec()),
                ]
            );

            // A transfer socket gives one datagram per turn; the next turn has the rest.
            client.send_to(b"a", transfer_addr).unwrap();
            client.send_to(b"b", transfer_addr).unwrap();
            for expected in [b"a", b"b"] {
                batch.clear();
                backend.receive(&mut batch).await;
                assert_eq!(datagrams(&batch), [(five, expected.to_vec())]);
            }

            // Retired: nothing more from it, and the backend lets it go.
            backend.retire(transfer, Some(watch), transfer_addr);
            client.send_to(b"late", transfer_addr).unwrap();
            client.send_to(b"rrq3", listener_addr).unwrap();
            batch.clear();
            backend.receive(&mut batch).await;
            assert_eq!(datagrams(&batch), [(Origin::Listener, b"rrq3".to_vec())]);
            assert!(!backend.watched.borrow().contains_key(&5));
        });
    }

    #[test]
    fn a_backlog_waits_for_room_and_leaves_in_order_even_after_retire() {
        on_runtime(async {
            let backend = TokioBackend::new(Rc::new(IoErrors::default())).unwrap();
            let (socket, addr) = bound(&backend);
            let one = Origin::Transfer(TransferId(1));
            let watch = backend.watch(&socket, one, TRANSFER_BUFFER).unwrap();
            let (other, other_addr) = bound(&backend);
            backend
                .watch(&other, Origin::Transfer(TransferId(2)), TRANSFER_BUFFER)
                .unwrap();
            let receiver = StdUdpSocket::bind("127.0.0.1:0").unwrap();
            receiver.set_nonblocking(true).unwrap();
            let to = receiver.local_addr().unwrap();

            // As after a full socket buffer: packets queue behind the backlog.
            socket.blocked.set(true);
            backend.send(&socket, to, Outgoing::Encoded(b"one".to_vec()));
            let (_, run) = loopback_run();
            backend.send(&socket, to, Outgoing::Data(run.clone()));
            backend.send(&socket, to, Outgoing::Encoded(b"two".to_vec()));
            let mut buf = [0u8; 2048];
            assert!(receiver.recv_from(&mut buf).is_err(), "nothing sent yet");
            backend.wait_for_room(&socket);
            // Retired while blocked: it stays until its backlog is out.
            backend.retire(socket.clone(), Some(watch), addr);
            assert!(backend.watched.borrow().contains_key(&1));

            // The next turn finds room and flushes (it returns with `other`'s datagram).
            StdUdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .send_to(b"wake", other_addr)
                .unwrap();
            let mut batch = Batch::default();
            backend.receive(&mut batch).await;
            receiver.set_nonblocking(false).unwrap();
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"one");
            receive_run(&receiver, &run);
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"two");
            assert!(!socket.blocked.get());
            assert!(!backend.watched.borrow().contains_key(&1), "let go");
        });
    }
}
