//! The plain-tokio TFTP driver: readiness-based UDP sockets, for kernels or containers where
//! io_uring is refused.
//!
//! A DATA packet goes out in one `sendmsg` with two iovecs (the 4-byte header and the slice of
//! the shared file), through `socket2`'s `send_to_vectored`: no copy into a per-client buffer.
//! The send is tried directly on the non-blocking socket; only when the socket buffer is full
//! does the packet wait, in a per-socket backlog flushed in order by a task that awaits
//! writability (`async_io`). tokio's `try_io` is not used for the first attempt because it
//! refuses to try at all until the reactor has seen the new socket writable, which would delay
//! the first window of every transfer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::event_loop::{Backend, Inbound, Inbox, IoErrors, Origin, Outgoing, RECEIVE_ERROR_PAUSE};
use crate::tftp::wire;

/// A tokio UDP socket with its send backlog.
#[derive(Debug)]
pub(crate) struct TokioSocket {
    socket: UdpSocket,
    /// Packets waiting for room in the socket buffer, oldest first.
    backlog: RefCell<VecDeque<(SocketAddr, Outgoing)>>,
    /// A task is flushing `backlog`.
    flushing: Cell<bool>,
}

/// The tokio socket operations.
#[derive(Debug)]
pub(crate) struct TokioBackend {
    errors: Rc<IoErrors>,
}

impl TokioBackend {
    /// A backend reporting send errors to `errors`.
    pub(crate) fn new(errors: Rc<IoErrors>) -> Self {
        Self { errors }
    }
}

impl Backend for TokioBackend {
    type Socket = TokioSocket;

    fn adopt(&self, socket: StdUdpSocket) -> io::Result<Rc<TokioSocket>> {
        socket.set_nonblocking(true)?;
        Ok(Rc::new(TokioSocket {
            socket: UdpSocket::from_std(socket)?,
            backlog: RefCell::default(),
            flushing: Cell::new(false),
        }))
    }

    fn spawn_receiver(
        &self,
        socket: Rc<TokioSocket>,
        origin: Origin,
        buffer: usize,
        inbox: Inbox,
    ) -> JoinHandle<()> {
        tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; buffer];
            loop {
                let message = match socket.socket.recv_from(&mut buf).await {
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

    fn send(&self, socket: &Rc<TokioSocket>, peer: SocketAddr, packet: Outgoing) {
        if !socket.backlog.borrow().is_empty() {
            socket.backlog.borrow_mut().push_back((peer, packet));
            return;
        }
        match send_now(&socket.socket, peer, &packet) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                socket.backlog.borrow_mut().push_back((peer, packet));
                if !socket.flushing.replace(true) {
                    tokio::task::spawn_local(flush(socket.clone(), self.errors.clone()));
                }
            }
            Err(e) => self.errors.send_failed(peer, &e),
        }
    }

    fn retire(&self, _socket: Rc<TokioSocket>, _local: SocketAddr) {
        // Dropping the last handle deregisters and closes the socket; a flushing task holds one
        // until its backlog is out.
    }
}

/// Send the backlog in order, waiting for room in the socket buffer.
async fn flush(socket: Rc<TokioSocket>, errors: Rc<IoErrors>) {
    loop {
        let next = socket.backlog.borrow_mut().pop_front();
        let Some((peer, packet)) = next else { break };
        let sent = socket
            .socket
            .async_io(Interest::WRITABLE, || {
                send_now(&socket.socket, peer, &packet)
            })
            .await;
        if let Err(e) = sent {
            errors.send_failed(peer, &e);
        }
    }
    socket.flushing.set(false);
}

/// One non-blocking send: DATA as two iovecs, anything else as one buffer.
fn send_now(socket: &UdpSocket, peer: SocketAddr, packet: &Outgoing) -> io::Result<usize> {
    match packet {
        Outgoing::Data { block, payload } => {
            let header = wire::emit_data_header(*block);
            let iov = [IoSlice::new(&header), IoSlice::new(payload)];
            SockRef::from(socket).send_to_vectored(&iov, &peer.into())
        }
        Outgoing::Encoded(bytes) => SockRef::from(socket).send_to(bytes, &peer.into()),
    }
}
