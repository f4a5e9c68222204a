//! The TFTP service: the sans-IO [`crate::tftp::Server`] driven on a dedicated thread by one of
//! two drivers that share one loop (`event_loop`) and differ only in socket I/O:
//!
//! - plain tokio (`tokio_driver`): every socket in one level-triggered epoll set, read in
//!   batches; the default (`driver = "auto"`);
//! - io_uring (`uring_driver`, `tokio-uring` on its own `Runtime`, ring set up with
//!   `IORING_SETUP_COOP_TASKRUN`), on request (`driver = "uring"`).
//!
//! Both send a window of DATA as UDP GSO sends (`gso`): one system call or one ring entry per
//! window instead of one per packet.
//!
//! Why `auto` means tokio: measured with `bench/tftp-compare.sh` (blksize 1468, 32 and 200
//! clients over a veth pair), the io_uring driver costs 1.3–1.4× the tokio driver's CPU per
//! GiB at window 1 (one ACK per DATA: tokio-uring allocates and spawns per operation, and a
//! receive is attempted, armed for poll and retried in the kernel) and about 1.05× with
//! windows. `auto` therefore never probes io_uring. `uring` probes it; where io_uring is
//! refused (Docker and containerd seccomp profiles, `kernel.io_uring_disabled`, old kernels)
//! netbootd logs why, once, and runs the same core on the tokio driver
//! (`netbootd_tftp_driver_info{driver="tokio"}` then shows it).
//!
//! [`TftpService::start`] binds the listening socket and picks the driver before returning, so
//! a busy port fails the daemon's start with a clear message.
//! Boot files are read once into shared memory (`files`); each transfer sends from its own
//! UDP socket on an ephemeral port of the listen address (its TID, RFC 1350 §4).

use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::config::{TftpConfig, TftpDriver};
use crate::metrics;
use crate::store::events::EventLog;
use crate::tftp::{Server, TftpLimits};

mod epoll;
mod event_loop;
mod events;
mod files;
mod gso;
mod mtu;
mod receive;
mod tokio_driver;
mod uring_driver;

pub use files::DEFAULT_CACHE_CAPACITY;
pub use mtu::{BlksizeSource, effective_max_blksize};
pub use uring_driver::{UringUnavailable, probe as probe_uring};

use event_loop::{IoErrors, LoopSetup};
use events::EventSink;

/// Longest file name accepted in a request, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// The driver running the TFTP core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring (`tokio-uring`).
    Uring,
    /// Plain tokio sockets.
    Tokio,
}

impl DriverKind {
    /// `uring` or `tokio` (the metric label and the log word).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uring => "uring",
            Self::Tokio => "tokio",
        }
    }
}

/// Why the TFTP service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TftpError {
    /// The listening socket could not be bound.
    #[error(
        "TFTP listen address {addr}: {source}; change [tftp] listen, free the port, or give \
         netbootd CAP_NET_BIND_SERVICE for port 69"
    )]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `NETBOOTD_TFTP_DRIVER` holds something else than `auto`, `uring` or `tokio`.
    #[error("NETBOOTD_TFTP_DRIVER={0:?} is not one of auto, uring, tokio: fix or unset it")]
    BadDriverEnv(String),
    /// The driver thread or its runtime could not start, or failed.
    #[error("TFTP driver: {0}")]
    Driver(String),
}

/// Where the driver setting comes from: `NETBOOTD_TFTP_DRIVER` (its value passed as `env`)
/// overrides the configuration.
///
/// # Errors
/// [`TftpError::BadDriverEnv`] for a value other than `auto`, `uring` or `tokio` (any case).
pub fn requested_driver(config: TftpDriver, env: Option<&str>) -> Result<TftpDriver, TftpError> {
    let Some(value) = env else {
        return Ok(config);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(config),
        "auto" => Ok(TftpDriver::Auto),
        "uring" | "io_uring" => Ok(TftpDriver::Uring),
        "tokio" => Ok(TftpDriver::Tokio),
        _ => Err(TftpError::BadDriverEnv(value.to_owned())),
    }
}

/// The driver chosen for a request, and why io_uring was not used when it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverChoice {
    /// The driver that runs.
    pub kind: DriverKind,
    /// `uring` was requested but refused: why (the tokio driver runs instead).
    pub uring_refused: Option<UringUnavailable>,
}

/// Pick the driver for `requested`: `auto` and `tokio` choose tokio (see the module docs for
/// why); `uring` probes io_uring with `probe` and falls back to tokio when it is refused.
pub fn select_driver(
    requested: TftpDriver,
    probe: impl FnOnce() -> Result<(), UringUnavailable>,
) -> DriverChoice {
    match requested {
        TftpDriver::Auto | TftpDriver::Tokio => DriverChoice {
            kind: DriverKind::Tokio,
            uring_refused: None,
        },
        TftpDriver::Uring => match probe() {
            Ok(()) => DriverChoice {
                kind: DriverKind::Uring,
                uring_refused: None,
            },
            Err(why) => DriverChoice {
                kind: DriverKind::Tokio,
                uring_refused: Some(why),
            },
        },
    }
}

/// Logs, once per start, that io_uring was refused and the tokio driver runs instead.
fn warn_fallback(why: &UringUnavailable) {
    warn!(
        reason = %why,
        "io_uring is unavailable, so the TFTP server runs on the tokio driver instead (same \
         protocol core; set [tftp] driver = \"tokio\" to silence this)"
    );
}

/// Why `driver` runs, for the start log line.
fn driver_reason(requested: TftpDriver) -> &'static str {
    match requested {
        TftpDriver::Auto => {
            "auto: the tokio driver uses less CPU per byte than io_uring (measured); set \
             driver = \"uring\" for io_uring"
        }
        TftpDriver::Tokio | TftpDriver::Uring => "requested",
    }
}

/// The running TFTP service.
#[derive(Debug)]
pub struct TftpService {
    driver: DriverKind,
    max_blksize: u16,
    blksize_source: BlksizeSource,
    local_addr: SocketAddr,
    done: oneshot::Receiver<Result<(), TftpError>>,
    thread: thread::JoinHandle<()>,
}

/// What [`TftpService::start`] needs besides the configuration.
#[derive(Debug, Default)]
pub struct TftpOptions {
    /// Capacity of the file cache in bytes ([`DEFAULT_CACHE_CAPACITY`] when `None`).
    pub cache_capacity: Option<u64>,
    /// Event log for transfer started/completed/failed events (none: logged only).
    pub events: Option<EventLog>,
}

impl TftpService {
    /// Bind `config.listen`, pick the driver for `requested` (see [`requested_driver`]), fit
    /// `max_blksize`, and start the driver thread; it runs until `stop` turns true.
    ///
    /// # Errors
    /// [`TftpError::Bind`] when the address cannot be bound, [`TftpError::Driver`] when the
    /// thread or its runtime cannot start. A refused `uring` falls back to tokio (logged once).
    pub fn start(
        config: &TftpConfig,
        requested: TftpDriver,
        options: TftpOptions,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, TftpError> {
        let listener = UdpSocket::bind(config.listen).map_err(|source| TftpError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| TftpError::Bind {
            addr: config.listen,
            source,
        })?;
        let (max_blksize, blksize_source) = effective_max_blksize(config);
        let limits = TftpLimits {
            max_blksize,
            max_windowsize: config.max_windowsize,
            max_transfers: config.max_transfers,
            max_queue: config.max_queue,
            default_timeout: config.timeout,
            max_retries: config.max_retries,
            max_path_len: MAX_PATH_LEN,
        };
        let choice = select_driver(requested, uring_driver::probe);
        if let Some(why) = &choice.uring_refused {
            warn_fallback(why);
        }
        let mut driver = choice.kind;
        let events = match options.events {
            Some(log) => Some(
                EventSink::start(log)
                    .map_err(|e| TftpError::Driver(format!("starting the event writer: {e}")))?,
            ),
            None => None,
        };
        let mut core = Server::new(limits);
        core.set_rate_limit(config.rate_limit_per_ip);
        let setup = LoopSetup {
            core,
            listener,
            root: Arc::from(config.root.as_path()),
            cache_capacity: options.cache_capacity.unwrap_or(DEFAULT_CACHE_CAPACITY),
            events,
        };
        let (done, thread) = match spawn(driver, setup, stop.clone())? {
            Ok(running) => running,
            // The probe passed but the ring itself could not be set up: fall back likewise.
            Err((error, setup)) if driver == DriverKind::Uring => {
                warn_fallback(&UringUnavailable {
                    reason: uring_driver::explain(&error, None),
                });
                driver = DriverKind::Tokio;
                match spawn(driver, setup, stop)? {
                    Ok(running) => running,
                    Err((error, _)) => {
                        return Err(TftpError::Driver(format!("starting the runtime: {error}")));
                    }
                }
            }
            Err((error, _)) => {
                return Err(TftpError::Driver(format!("starting the runtime: {error}")));
            }
        };
        metrics::tftp_started(driver.as_str());
        info!(
            listen = %local_addr,
            driver = driver.as_str(),
            why = driver_reason(requested),
            max_blksize,
            blksize = %blksize_source,
            root = %config.root.display(),
            "TFTP server started"
        );
        Ok(Self {
            driver,
            max_blksize,
            blksize_source,
            local_addr,
            done,
            thread,
        })
    }

    /// The driver running.
    pub fn driver(&self) -> DriverKind {
        self.driver
    }

    /// The effective `max_blksize`.
    pub fn max_blksize(&self) -> u16 {
        self.max_blksize
    }

    /// Where the effective `max_blksize` came from.
    pub fn blksize_source(&self) -> &BlksizeSource {
        &self.blksize_source
    }

    /// The bound listening address (with the actual port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Wait until the driver has stopped (after `stop`), from async code.
    ///
    /// # Errors
    /// When the driver failed or its thread panicked.
    pub async fn stopped(self) -> Result<(), TftpError> {
        let result = self.done.await.unwrap_or_else(|_| {
            Err(TftpError::Driver(
                "the driver thread ended unexpectedly".into(),
            ))
        });
        let _ = self.thread.join();
        result
    }

    /// Wait until the driver has stopped (after `stop`), blocking the calling thread.
    ///
    /// # Errors
    /// As [`TftpService::stopped`].
    pub fn join(mut self) -> Result<(), TftpError> {
        let joined = self.thread.join();
        // The thread has ended: its result was sent, or never will be.
        match self.done.try_recv() {
            Ok(result) => result,
            Err(_) if joined.is_err() => {
                Err(TftpError::Driver("the driver thread panicked".into()))
            }
            Err(_) => Err(TftpError::Driver(
                "the driver thread ended unexpectedly".into(),
            )),
        }
    }
}

type Running = (
    oneshot::Receiver<Result<(), TftpError>>,
    thread::JoinHandle<()>,
);
/// A runtime that could not be built, with the setup handed back for another driver.
type NotStarted = (std::io::Error, LoopSetup);

/// Start the driver thread with `kind`'s runtime. The outer error is a thread that could not
/// be spawned; the inner one a runtime that could not be built.
fn spawn(
    kind: DriverKind,
    setup: LoopSetup,
    stop: watch::Receiver<bool>,
) -> Result<Result<Running, NotStarted>, TftpError> {
    let (started_tx, started_rx) = std_mpsc::channel::<Result<(), NotStarted>>();
    let (done_tx, done_rx) = oneshot::channel();
    let thread = thread::Builder::new()
        .name(format!("netbootd-tftp-{}", kind.as_str()))
        .spawn(move || {
            let result = match kind {
                DriverKind::Uring => run_uring(setup, stop, &started_tx),
                DriverKind::Tokio => run_tokio(setup, stop, &started_tx),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| TftpError::Driver(format!("spawning the driver thread: {e}")))?;
    match started_rx.recv() {
        Ok(Ok(())) => Ok(Ok((done_rx, thread))),
        Ok(Err(not_started)) => {
            let _ = thread.join();
            Ok(Err(not_started))
        }
        Err(_) => {
            let _ = thread.join();
            Err(TftpError::Driver(
                "the driver thread died while starting".into(),
            ))
        }
    }
}

type Started = std_mpsc::Sender<Result<(), NotStarted>>;

fn run_uring(
    setup: LoopSetup,
    stop: watch::Receiver<bool>,
    started: &Started,
) -> Result<(), TftpError> {
    let waker = match setup.listener.try_clone() {
        Ok(waker) => waker,
        Err(e) => {
            let _ = started.send(Err((e, setup)));
            return Ok(());
        }
    };
    let runtime = match uring_driver::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err((e, setup)));
            return Ok(());
        }
    };
    let _ = started.send(Ok(()));
    let errors = Rc::new(IoErrors::default());
    let backend = uring_driver::UringBackend::new(errors.clone(), waker);
    runtime
        .block_on(event_loop::run(backend, errors, setup, stop))
        .map_err(|e| TftpError::Driver(e.to_string()))
}

fn run_tokio(
    setup: LoopSetup,
    stop: watch::Receiver<bool>,
    started: &Started,
) -> Result<(), TftpError> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err((e, setup)));
            return Ok(());
        }
    };
    let errors = Rc::new(IoErrors::default());
    let backend = {
        let _context = runtime.enter();
        tokio_driver::TokioBackend::new(errors.clone())
    };
    let backend = match backend {
        Ok(backend) => backend,
        Err(e) => {
            let _ = started.send(Err((e, setup)));
            return Ok(());
        }
    };
    let _ = started.send(Ok(()));
    let local = tokio::task::LocalSet::new();
    local
        .block_on(&runtime, event_loop::run(backend, errors, setup, stop))
        .map_err(|e| TftpError::Driver(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Result<(), UringUnavailable> {
        Err(UringUnavailable {
            reason: "kernel.io_uring_disabled = 2 (EPERM)".into(),
        })
    }

    #[test]
    fn auto_chooses_tokio_without_probing() {
        let driver = select_driver(TftpDriver::Auto, || panic!("probed")).kind;
        assert_eq!(driver, DriverKind::Tokio);
        assert!(driver_reason(TftpDriver::Auto).contains("driver = \"uring\""));
    }

    #[test]
    fn uring_falls_back_to_tokio_when_refused() {
        assert_eq!(
            select_driver(TftpDriver::Uring, || Ok(())),
            DriverChoice {
                kind: DriverKind::Uring,
                uring_refused: None
            }
        );
        let choice = select_driver(TftpDriver::Uring, refused);
        assert_eq!(choice.kind, DriverKind::Tokio);
        let why = choice.uring_refused.unwrap().to_string();
        assert!(why.contains("kernel.io_uring_disabled = 2"), "{why}");
    }

    #[test]
    fn tokio_never_probes() {
        let driver = select_driver(TftpDriver::Tokio, || panic!("probed")).kind;
        assert_eq!(driver, DriverKind::Tokio);
    }

    #[test]
    fn environment_overrides_the_file() {
        assert_eq!(
            requested_driver(TftpDriver::Uring, None).unwrap(),
            TftpDriver::Uring
        );
        assert_eq!(
            requested_driver(TftpDriver::Uring, Some("")).unwrap(),
            TftpDriver::Uring
        );
        assert_eq!(
            requested_driver(TftpDriver::Uring, Some("tokio")).unwrap(),
            TftpDriver::Tokio
        );
        assert_eq!(
            requested_driver(TftpDriver::Tokio, Some(" URING ")).unwrap(),
            TftpDriver::Uring
        );
        assert_eq!(
            requested_driver(TftpDriver::Tokio, Some("auto")).unwrap(),
            TftpDriver::Auto
        );
        let err = requested_driver(TftpDriver::Auto, Some("epoll")).unwrap_err();
        assert!(
            err.to_string().contains("NETBOOTD_TFTP_DRIVER=\"epoll\""),
            "{err}"
        );
    }

    #[test]
    fn probe_agrees_with_the_kernel_setting() {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok());
        match probe_uring() {
            Ok(()) => assert_ne!(disabled, Some(2), "io_uring is disabled system-wide"),
            Err(e) if disabled == Some(2) => {
                assert_eq!(e.reason, "kernel.io_uring_disabled = 2 (EPERM)");
            }
            Err(e) => assert!(!e.reason.is_empty()),
        }
    }
}
