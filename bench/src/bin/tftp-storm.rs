//! `tftp-storm`: many TFTP clients fetching one file at once, bounded in time.
//!
//! Every simulated client has its own UDP socket (its own port, so the server sees N distinct
//! clients). A single thread runs them all: one epoll set over the sockets, each ready socket
//! drained with `recvmmsg` (up to 64 datagrams per call: a whole window; a short count means the
//! socket is empty, so no call is spent on `EAGAIN`), ACKs sent as soon as a window is complete.
//! DATA is received with `MSG_TRUNC` into 128-byte buffers, so the payload is counted without
//! being copied (`--verify FILE` receives it whole and compares it with the file instead). The
//! generator's own CPU time is in the report, so a run shows whether it was the bottleneck.
//!
//! `--raw-send ADDR:PORT` / `--raw-recv ADDR:PORT` measure instead the plain UDP throughput of
//! the path (one sender blasting datagrams of `--raw-size` bytes, one receiver counting them):
//! the ceiling a TFTP server on that path could reach. With `--raw-batch N` the sender hands the
//! kernel N datagrams per `sendmmsg` call; its CPU time per GiB is then the floor of what any
//! sender pays on that path for one datagram per block, however few system calls it makes.
//!
//! Prints a one-line summary (to stderr with `--json`, which prints one JSON object on stdout).
//! Exit status 0 when every client completed, 3 when some did not, 1 on errors.

use std::io::{self, IoSlice, IoSliceMut, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ims_bench::tftp_storm::packet::{encode_ack, encode_rrq};
use ims_bench::tftp_storm::{
    ClientParams, Payload, RequestOptions, Storm, StormConfig, StormReport, Target,
};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, recvmsg, sendmmsg};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

/// TFTP storm generator: N clients, each with its own socket, fetch one file at once.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The TFTP server.
    #[arg(long, value_name = "ADDR", required_unless_present_any = ["raw_send", "raw_recv"])]
    server: Option<Ipv4Addr>,
    /// The server's port.
    #[arg(long, default_value_t = 69)]
    port: u16,
    /// Local address of the clients' sockets.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    bind: Ipv4Addr,
    /// Simulated clients (each with its own socket).
    #[arg(long, value_name = "N", default_value_t = 1)]
    clients: usize,
    /// The file every client fetches.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["raw_send", "raw_recv"])]
    file: Option<String>,
    /// Block size to ask for.
    #[arg(long, value_name = "BYTES", default_value_t = 1468)]
    blksize: u16,
    /// Window size to ask for (RFC 7440); 1 asks for none (lock-step).
    #[arg(long, value_name = "N", default_value_t = 1)]
    windowsize: u16,
    /// Send plain RFC 1350 requests: no blksize, windowsize or tsize.
    #[arg(long)]
    no_options: bool,
    /// Fail transfers that do not deliver exactly this many bytes (tsize is checked anyway).
    #[arg(long, value_name = "BYTES")]
    expect_size: Option<u64>,
    /// Silence after which a client sends its last packet again.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout_ms: u64,
    /// Resends in a row before a client gives up.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
    /// Start clients at this rate per second instead of all at once.
    #[arg(long, value_name = "R")]
    ramp: Option<f64>,
    /// Hard bound on the run; clients still running then count as unfinished.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    max_seconds: f64,
    /// Compare every received block with this local copy of the file (receives whole payloads).
    #[arg(long, value_name = "FILE")]
    verify: Option<PathBuf>,
    /// Receive buffer of each client socket (the kernel caps it at net.core.rmem_max).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    rcvbuf: usize,
    /// Print the report as one JSON object on stdout (the summary line goes to stderr).
    #[arg(long)]
    json: bool,
    /// Raw UDP ceiling, sender side: blast datagrams at ADDR:PORT for --raw-seconds.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "raw_recv")]
    raw_send: Option<SocketAddrV4>,
    /// Raw UDP ceiling, receiver side: count datagrams arriving at ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    raw_recv: Option<SocketAddrV4>,
    /// Raw UDP datagram size (1472 fills a 1500-byte MTU, like a 1468-byte TFTP block).
    #[arg(long, value_name = "BYTES", default_value_t = 1472)]
    raw_size: usize,
    /// Raw UDP: how long to send; the receiver stops 1 s after the last datagram (or at
    /// --max-seconds).
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    raw_seconds: f64,
    /// Raw UDP sender: datagrams per system call (1: one `send` each; more: `sendmmsg`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    raw_batch: u16,
}

/// The JSON document of a storm: its parameters and its report.
#[derive(Debug, Serialize)]
struct Output<'a> {
    server: String,
    file: &'a str,
    clients: usize,
    blksize_asked: u16,
    windowsize_asked: u16,
    options: bool,
    /// Packets the kernel would not take (full send buffer); the client's timeout recovers.
    send_failures: u64,
    /// Blocks whose bytes differed from the --verify file.
    verify_mismatches: Option<u64>,
    #[serde(flatten)]
    report: &'a StormReport,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            let _ = writeln!(io::stderr(), "tftp-storm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    if !(args.max_seconds.is_finite() && args.max_seconds > 0.0) {
        bail!("--max-seconds must be a positive number of seconds");
    }
    if let Some(to) = args.raw_send {
        return raw_send(&args, to);
    }
    if let Some(at) = args.raw_recv {
        return raw_recv(&args, at);
    }
    let (Some(server), Some(file)) = (args.server, args.file.as_deref()) else {
        bail!("give --server ADDR and --file NAME");
    };
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(8..=65464).contains(&args.blksize) || args.windowsize == 0 {
        bail!("--blksize must be 8–65464 and --windowsize at least 1");
    }
    let expected = match &args.verify {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let opts = if args.no_options {
        RequestOptions::NONE
    } else {
        RequestOptions {
            blksize: Some(args.blksize),
            windowsize: (args.windowsize > 1).then_some(args.windowsize),
            tsize: true,
        }
    };
    let params = ClientParams {
        blksize: args.blksize,
        windowsize: args.windowsize,
        options: !args.no_options,
        timeout: Duration::from_millis(args.timeout_ms),
        retries: args.retries,
        expect_size: args
            .expect_size
            .or(expected.as_ref().map(|e| e.len() as u64)),
    };
    let sockets = client_sockets(args.bind, args.clients, args.rcvbuf)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    for (i, s) in sockets.iter().enumerate() {
        epoll
            .add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .context("epoll_ctl")?;
    }
    let mut driver = Driver {
        sockets,
        rrq: encode_rrq(file, &opts),
        server: SocketAddrV4::new(server, args.port),
        send_failures: 0,
        expected,
        verify_mismatches: 0,
    };
    let config = StormConfig {
        clients: args.clients,
        params,
        ramp: args.ramp,
    };
    let cpu_before = cpu_seconds()?;
    let start = clock();
    let hard_stop = start + Duration::from_secs_f64(args.max_seconds);
    let mut storm = Storm::new(config, start);
    driver.event_loop(&mut storm, &epoll, hard_stop, params.timeout)?;
    let mut report = storm.report(clock());
    report.generator_cpu_s = Some(cpu_seconds()? - cpu_before);

    let verify_mismatches = driver
        .expected
        .is_some()
        .then_some(driver.verify_mismatches);
    let ok = report.counters.completed == args.clients as u64 && driver.verify_mismatches == 0;
    let summary = format!(
        "tftp-storm {} x {file} blksize {} windowsize {}: {report}{}{}",
        args.clients,
        args.blksize,
        args.windowsize,
        if driver.send_failures > 0 {
            format!("; {} send failures", driver.send_failures)
        } else {
            String::new()
        },
        match verify_mismatches {
            Some(0) => "; every block verified".to_owned(),
            Some(n) => format!("; {n} blocks DIFFER from the --verify file"),
            None => String::new(),
        }
    );
    let mut stdout = io::stdout().lock();
    if args.json {
        let _ = writeln!(io::stderr(), "{summary}");
        let out = Output {
            server: driver.server.to_string(),
            file,
            clients: args.clients,
            blksize_asked: args.blksize,
            windowsize_asked: args.windowsize,
            options: !args.no_options,
            send_failures: driver.send_failures,
            verify_mismatches,
            report: &report,
        };
        writeln!(stdout, "{}", serde_json::to_string(&out)?)?;
    } else {
        writeln!(stdout, "{summary}")?;
    }
    Ok(ok)
}

/// Datagrams taken off a socket by one `recvmmsg`.
const RECV_BATCH: usize = 64;

/// Buffers of one `recvmmsg`: `RECV_BATCH` slots of `size` bytes, and what arrived in each.
struct RecvBuffers {
    size: usize,
    data: Vec<u8>,
    headers: MultiHeaders<SockaddrIn>,
    /// Length (before truncation) and source port of each datagram received.
    meta: Vec<(usize, u16)>,
}

impl RecvBuffers {
    fn new(size: usize) -> Self {
        Self {
            size,
            data: vec![0; size * RECV_BATCH],
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            meta: vec![(0, 0); RECV_BATCH],
        }
    }
}

/// Sockets and what the loop needs to send.
struct Driver {
    sockets: Vec<UdpSocket>,
    rrq: Vec<u8>,
    server: SocketAddrV4,
    send_failures: u64,
    expected: Option<Vec<u8>>,
    verify_mismatches: u64,
}

impl Driver {
    fn event_loop(
        &mut self,
        storm: &mut Storm,
        epoll: &Epoll,
        hard_stop: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        // Timeouts are scanned coarsely: a quarter of the client timeout, at most 50 ms.
        let scan = (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
        let mut next_scan = clock() + scan;
        let mut events = vec![EpollEvent::empty(); 256];
        let mut bufs = RecvBuffers::new(if self.expected.is_some() { 65536 } else { 128 });
        loop {
            let now = clock();
            if now >= next_scan {
                storm.handle_timeout(now);
                next_scan = now + scan;
            }
            self.flush(storm, now)?;
            if storm.is_done() || now >= hard_stop {
                return Ok(());
            }
            let wake = storm
                .next_start()
                .map_or(next_scan, |s| s.min(next_scan))
                .min(hard_stop);
            let wait = wake.saturating_duration_since(clock());
            // Round up: a zero timeout for a sub-millisecond wait would spin.
            let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let n = match epoll.wait(&mut events, EpollTimeout::from(ms)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e).context("epoll_wait"),
            };
            let now = clock();
            for ev in &events[..n] {
                let i = usize::try_from(ev.data()).unwrap_or(usize::MAX);
                self.drain(storm, i, now, &mut bufs)?;
            }
        }
    }

    /// Receive everything queued on client `i`'s socket and answer as the client says.
    fn drain(
        &mut self,
        storm: &mut Storm,
        i: usize,
        now: Instant,
        bufs: &mut RecvBuffers,
    ) -> anyhow::Result<()> {
        let Some(sock) = self.sockets.get(i) else {
            return Ok(());
        };
        let fd = sock.as_raw_fd();
        loop {
            let received = {
                let size = bufs.size;
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .data
                    .chunks_mut(size)
                    .map(|chunk| [IoSliceMut::new(chunk)])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut bufs.headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_TRUNC,
                    None,
                ) {
                    Ok(results) => {
                        let mut n = 0;
                        for (slot, m) in bufs.meta.iter_mut().zip(results) {
                            *slot = (m.bytes, m.address.map_or(0, |a| a.port()));
                            n += 1;
                        }
                        n
                    }
                    Err(Errno::EAGAIN) => return Ok(()),
                    Err(Errno::EINTR) => continue,
                    // An ICMP error queued on the socket (port unreachable): the client's
                    // timeout deals with it.
                    Err(Errno::ECONNREFUSED) => continue,
                    Err(e) => return Err(e).context("recvmmsg"),
                }
            };
            for k in 0..received {
                let (len, port) = bufs.meta[k];
                let slot = &bufs.data[k * bufs.size..(k + 1) * bufs.size];
                let head = &slot[..len.min(bufs.size)];
                let before = storm.client(i).map_or(0, |c| c.bytes());
                storm.handle(now, i, port, head, len);
                if let Some(expected) = &self.expected {
                    let after = storm.client(i).map_or(0, |c| c.bytes());
                    if after > before {
                        let want = usize::try_from(before)
                            .ok()
                            .zip(usize::try_from(after).ok())
                            .and_then(|(a, b)| expected.get(a..b));
                        if want != head.get(4..) {
                            self.verify_mismatches += 1;
                        }
                    }
                }
            }
            self.flush(storm, now)?;
            // Fewer than asked for: the socket is empty.
            if received < RECV_BATCH {
                return Ok(());
            }
        }
    }

    /// Send everything the storm has queued.
    fn flush(&mut self, storm: &mut Storm, now: Instant) -> anyhow::Result<()> {
        while let Some((i, tx)) = storm.poll_transmit(now) {
            let Some(sock) = self.sockets.get(i) else {
                continue;
            };
            let to = match tx.target {
                Target::Listener => self.server,
                Target::Tid(port) => SocketAddrV4::new(*self.server.ip(), port),
            };
            let ack;
            let bytes: &[u8] = match tx.payload {
                Payload::Rrq => &self.rrq,
                Payload::Ack(b) => {
                    ack = encode_ack(b);
                    &ack
                }
            };
            match sock.send_to(bytes, to) {
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(nix::libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::ConnectionRefused =>
                {
                    self.send_failures += 1;
                }
                Err(e) => return Err(e).with_context(|| format!("sending to {to}")),
            }
        }
        Ok(())
    }
}

/// `n` non-blocking UDP sockets on `bind`, ephemeral ports.
fn client_sockets(bind: Ipv4Addr, n: usize, rcvbuf: usize) -> anyhow::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|i| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            // Best effort: the kernel caps it at net.core.rmem_max.
            let _ = s.set_recv_buffer_size(rcvbuf);
            s.bind(&SocketAddr::V4(SocketAddrV4::new(bind, 0)).into())
                .with_context(|| format!("binding client socket {i} on {bind}"))?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
        .collect::<anyhow::Result<Vec<UdpSocket>>>()
        .with_context(|| {
            format!("opening {n} client sockets (raise the open-file limit with `ulimit -n`?)")
        })
}

/// Raw UDP result.
#[derive(Debug, Serialize)]
struct RawReport {
    mode: &'static str,
    datagram_bytes: usize,
    /// Datagrams per system call (the sender's `--raw-batch`; 1 for the receiver).
    batch: u16,
    datagrams: u64,
    bytes: u64,
    elapsed_s: f64,
    mb_per_s: f64,
    cpu_s: f64,
}

fn raw_send(args: &Args, to: SocketAddrV4) -> anyhow::Result<bool> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&SocketAddr::V4(SocketAddrV4::new(args.bind, 0)).into())?;
    s.connect(&SocketAddr::V4(to).into())
        .with_context(|| format!("connecting to {to}"))?;
    let sock: UdpSocket = s.into();
    let payload = vec![0x5au8; args.raw_size];
    let cpu0 = cpu_seconds()?;
    let start = clock();
    let stop = start + Duration::from_secs_f64(args.raw_seconds.min(args.max_seconds));
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    let batch = usize::from(args.raw_batch);
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(batch, None);
    let slices = vec![[IoSlice::new(&payload)]; batch];
    let addrs = vec![None; batch];
    while clock() < stop {
        for _ in 0..256 / batch.min(256) {
            let sent = if batch == 1 {
                sock.send(&payload).map(|n| (1, n))
            } else {
                sendmmsg(
                    sock.as_raw_fd(),
                    &mut headers,
                    &slices,
                    &addrs,
                    [],
                    MsgFlags::empty(),
                )
                .map(|results| results.fold((0, 0), |(d, b), r| (d + 1, b + r.bytes)))
                .map_err(io::Error::from)
            };
            match sent {
                Ok((d, n)) => {
                    datagrams += d;
                    bytes += n as u64;
                }
                // The receiver is not up yet or went away: keep blasting.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused
                        || e.raw_os_error() == Some(nix::libc::ENOBUFS) => {}
                Err(e) => return Err(e).context("send"),
            }
        }
    }
    let elapsed = clock().duration_since(start).as_secs_f64();
    print_raw(
        args,
        &RawReport {
            mode: "send",
            datagram_bytes: args.raw_size,
            batch: args.raw_batch,
            datagrams,
            bytes,
            elapsed_s: elapsed,
            mb_per_s: bytes as f64 / elapsed / 1e6,
            cpu_s: cpu_seconds()? - cpu0,
        },
    )
}

fn raw_recv(args: &Args, at: SocketAddrV4) -> anyhow::Result<bool> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(8 << 20);
    s.bind(&SocketAddr::V4(at).into())
        .with_context(|| format!("binding {at}"))?;
    let sock: UdpSocket = s.into();
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let fd = sock.as_raw_fd();
    let mut buf = [0u8; 64];
    let cpu0 = cpu_seconds()?;
    let hard_stop = clock() + Duration::from_secs_f64(args.max_seconds);
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    loop {
        let now = clock();
        if now >= hard_stop || last.is_some_and(|l| now.duration_since(l) > Duration::from_secs(1))
        {
            break;
        }
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<SockaddrIn>(fd, &mut iov, None, MsgFlags::MSG_TRUNC) {
            Ok(m) => {
                let now = clock();
                first.get_or_insert(now);
                last = Some(now);
                datagrams += 1;
                bytes += m.bytes as u64;
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(e).context("recvmsg"),
        }
    }
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    print_raw(
        args,
        &RawReport {
            mode: "recv",
            datagram_bytes: args.raw_size,
            batch: 1,
            datagrams,
            bytes,
            elapsed_s: elapsed,
            mb_per_s: if elapsed > 0.0 {
                bytes as f64 / elapsed / 1e6
            } else {
                0.0
            },
            cpu_s: cpu_seconds()? - cpu0,
        },
    )
    .map(|_| datagrams > 0)
}

fn print_raw(args: &Args, r: &RawReport) -> anyhow::Result<bool> {
    let line = format!(
        "raw UDP {}: {} datagrams of {} bytes, {:.1} MB/s over {:.2} s, CPU {:.2} s",
        r.mode, r.datagrams, r.datagram_bytes, r.mb_per_s, r.elapsed_s, r.cpu_s
    );
    let mut stdout = io::stdout().lock();
    if args.json {
        let _ = writeln!(io::stderr(), "{line}");
        writeln!(stdout, "{}", serde_json::to_string(r)?)?;
    } else {
        writeln!(stdout, "{line}")?;
    }
    Ok(true)
}

/// This process's CPU time so far (user + system), seconds.
fn cpu_seconds() -> anyhow::Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// The driver reads the clock; the storm only ever gets `now` passed in.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}
