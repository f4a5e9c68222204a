//! The control plane's UI on the host: a TCP forwarder from `127.0.0.1:PORT` (the host's
//! loopback) to `ims-control` in the site namespace, so a browser on this machine can open the
//! UI while the lab runs. Nothing but loopback and the lab's own namespace is touched.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::netns;

/// A running forwarder; stopped (listener closed) on drop.
#[derive(Debug)]
pub struct Forwarder {
    /// The address on the host.
    pub local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Listen on `127.0.0.1:preferred` (an ephemeral port if that is taken) and forward every
    /// connection to `target` inside namespace `ns`.
    ///
    /// # Errors
    /// No loopback port can be bound.
    pub fn start(preferred: u16, ns: &str, target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", preferred))
            .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let ns = ns.to_owned();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let ns = ns.clone();
                        std::thread::spawn(move || relay(client, &ns, target));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Ok(Self {
            local,
            stop,
            thread: Some(thread),
        })
    }
}

/// Copy both ways between `client` and a new connection to `target` made from inside `ns`.
fn relay(client: TcpStream, ns: &str, target: SocketAddr) {
    if netns::enter(ns).is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return;
    };
    let _ = client.set_nonblocking(false);
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let (mut c, mut s) = (client, server);
    let _ = io::copy(&mut s, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
