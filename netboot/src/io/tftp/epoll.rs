//! A level-triggered epoll set of the TFTP sockets for the tokio driver, itself waited on
//! through tokio's reactor (`AsyncFd`, edge-triggered).
//!
//! Why not one tokio socket per transfer: each would need a receiver task, a wake-up, a
//! message to the loop and, after every datagram, one more `recvfrom` that fails with `EAGAIN`
//! before tokio lets the task sleep. Here the loop asks the kernel for every ready socket in
//! one `epoll_wait`, reads one datagram from each (level-triggered: a socket with more comes
//! back at the next call), and only when a call finds nothing does it wait for tokio's reactor.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// Most readiness events fetched by one [`Epoll::fetch`].
pub(crate) const MAX_EVENTS: usize = 256;

/// One socket's readiness, as [`Epoll::fetch`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The token the socket was registered with.
    pub(crate) token: u64,
    /// Datagrams (or an error) wait to be read.
    pub(crate) readable: bool,
    /// The socket buffer has room.
    pub(crate) writable: bool,
}

/// What a socket is watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watch {
    /// Datagrams to read.
    pub(crate) read: bool,
    /// Room to write.
    pub(crate) write: bool,
}

/// An epoll instance registered with tokio's reactor.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: AsyncFd<OwnedFd>,
    events: RefCell<Vec<libc::epoll_event>>,
}

impl Epoll {
    /// A new, empty set (within a tokio runtime with IO enabled).
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: a plain system call with a valid flag; it returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns or closes.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the `AsyncFd` owns the `OwnedFd`, which nothing else closes or replaces: the
        // descriptor stays open and the same for the whole registration.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self {
            fd,
            events: RefCell::new(vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS]),
        })
    }

    /// Watch `socket` for `watch`, reporting it as `token`.
    pub(crate) fn add(&self, socket: BorrowedFd<'_>, token: u64, watch: Watch) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, socket, token, watch)
    }

    /// Change what `socket` (watched as `token`) is watched for.
    pub(crate) fn modify(
        &self,
        socket: BorrowedFd<'_>,
        token: u64,
        watch: Watch,
    ) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, socket, token, watch)
    }

    /// Stop watching `socket`.
    pub(crate) fn delete(&self, socket: BorrowedFd<'_>) -> io::Result<()> {
        let watch = Watch {
            read: false,
            write: false,
        };
        self.control(libc::EPOLL_CTL_DEL, socket, 0, watch)
    }

    fn control(
        &self,
        op: libc::c_int,
        socket: BorrowedFd<'_>,
        token: u64,
        watch: Watch,
    ) -> io::Result<()> {
        let mut flags = 0;
        if watch.read {
            flags |= libc::EPOLLIN;
        }
        if watch.write {
            flags |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            // The flags are small positive constants (no sign to lose).
            events: flags as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open (the set is owned here, `socket` is borrowed for
        // the call) and `event` is a live, initialised epoll_event (ignored by DEL).
        let rc =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, socket.as_raw_fd(), &raw mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait until the set may have ready sockets (tokio's reactor saw it readable). Clear
    /// the returned guard when [`Epoll::fetch`] then finds nothing.
    pub(crate) async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.fd.readable().await
    }

    /// The sockets ready now (at most [`MAX_EVENTS`]), without waiting; appended to `ready`.
    pub(crate) fn fetch(&self, ready: &mut Vec<Ready>) -> io::Result<usize> {
        let mut events = self.events.borrow_mut();
        let capacity = libc::c_int::try_from(events.len()).unwrap_or(libc::c_int::MAX);
        let n = loop {
            // SAFETY: the set is open; `events` has room for `capacity` entries, which the
            // kernel may overwrite (plain data); a timeout of 0 never blocks.
            let n =
                unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), capacity, 0) };
            match usize::try_from(n) {
                Ok(n) => break n,
                Err(_) => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        };
        // The flags are small positive constants (no sign to lose).
        let mask = |flag: libc::c_int| flag as u32;
        for event in &events[..n.min(events.len())] {
            // Copies: the struct is packed on x86-64.
            let (flags, token) = (event.events, event.u64);
            ready.push(Ready {
                token,
                readable: flags & mask(libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) != 0,
                writable: flags & mask(libc::EPOLLOUT | libc::EPOLLERR) != 0,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn level_triggered_readiness_of_sockets() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let epoll = Epoll::new().unwrap();
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            a.set_nonblocking(true).unwrap();
            let read = Watch {
                read: true,
                write: false,
            };
            epoll.add(a.as_fd(), 7, read).unwrap();
            epoll.add(b.as_fd(), 8, read).unwrap();
            let mut ready = Vec::new();
            assert_eq!(epoll.fetch(&mut ready).unwrap(), 0);

            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.send_to(b"one", a.local_addr().unwrap()).unwrap();
            sender.send_to(b"two", a.local_addr().unwrap()).unwrap();
            let guard = epoll.readable().await.unwrap();
            drop(guard);
            epoll.fetch(&mut ready).unwrap();
            assert_eq!(
                ready,
                [Ready {
                    token: 7,
                    readable: true,
                    writable: false
                }]
            );
            // Level-triggered: still ready after one of two datagrams is read.
            let mut buf = [0u8; 8];
            assert_eq!(a.recv(&mut buf).unwrap(), 3);
            ready.clear();
            assert_eq!(epoll.fetch(&mut ready).unwrap(), 1);
            assert_eq!(a.recv(&mut buf).unwrap(), 3);
            ready.clear();
            assert_eq!(epoll.fetch(&mut ready).unwrap(), 0);

            // Watching for room reports an idle socket writable at once.
            let both = Watch {
                read: true,
                write: true,
            };
            epoll.modify(b.as_fd(), 8, both).unwrap();
            epoll.fetch(&mut ready).unwrap();
            assert_eq!(
                ready,
                [Ready {
                    token: 8,
                    readable: false,
                    writable: true
                }]
            );
            epoll.delete(b.as_fd()).unwrap();
            ready.clear();
            assert_eq!(epoll.fetch(&mut ready).unwrap(), 0);
        });
    }
}
