//! `dhcp-load`: a DHCPv4 DORA load generator.
//!
//! Many simulated clients, each with its own MAC, run full DORA against a server, bounded in
//! count (`--count`) and time (`--max-seconds`):
//! - `--relay GIADDR --server ADDR`: as a relay agent. A UDP socket bound to `GIADDR:67` sends
//!   requests with `giaddr = GIADDR`, `hops = 1` to `ADDR:67` and receives the replies there.
//! - `--direct IFNAME`: as clients on the link. Broadcast frames from each client's MAC with
//!   the BROADCAST flag go out of an AF_PACKET socket on `IFNAME`; replies to UDP port 68 come
//!   back through the same socket.
//!
//! Prints a one-line summary (to stderr with `--json`, which prints the report as one JSON
//! object on stdout). Exit status 0 when every started DORA completed, 3 when some did not
//! (as perfdhcp), 1 on errors.
//!
//! The loop is single-threaded: drain received replies, fire timers, send what is due, then
//! `ppoll` until the next reply or deadline. Its own CPU time is part of the report, so a run
//! shows whether the generator was the bottleneck.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser};
use ims_bench::dhcp_load::packet::{self, CLIENT_PORT, SERVER_PORT};
use ims_bench::dhcp_load::{Addressing, Generator, LoadConfig, Report, Transmit};
use ims_netboot::io::raw_socket::{PacketType, RawSocket};
use ims_proto::MacAddr;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeSpec;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

/// DHCPv4 DORA load generator (relay or direct/raw), bounded in count and time.
#[derive(Debug, Parser)]
#[command(version, about)]
#[command(group(ArgGroup::new("mode").required(true).args(["relay", "direct"])))]
struct Args {
    /// Act as a relay agent with this address: bind GIADDR:67, set giaddr, send to --server.
    #[arg(long, value_name = "GIADDR")]
    relay: Option<Ipv4Addr>,
    /// The server to send relayed requests to (port 67).
    #[arg(long, value_name = "ADDR", requires = "relay")]
    server: Option<Ipv4Addr>,
    /// Act as clients on this link: broadcast frames from each client's MAC (needs CAP_NET_RAW).
    #[arg(long, value_name = "IFNAME")]
    direct: Option<String>,
    /// File of client MACs, one per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "clients")]
    macs: Option<PathBuf>,
    /// Number of sequential client MACs starting at --mac-base.
    #[arg(long, value_name = "N")]
    clients: Option<u32>,
    /// First MAC of --clients.
    #[arg(long, value_name = "MAC", default_value = "02:00:00:00:00:00")]
    mac_base: MacAddr,
    /// DORAs to run in total (default: one per client); client n runs DORA n, n + clients, …
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Target DORA starts per second (default: as fast as --concurrency allows).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Most DORAs outstanding at once.
    #[arg(long, value_name = "K", default_value_t = 256)]
    concurrency: usize,
    /// Wait for a reply this long before retransmitting or giving up.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout_ms: u64,
    /// Sends per phase (DISCOVER, REQUEST), the first one included.
    #[arg(long, value_name = "N", default_value_t = 2)]
    tries: u32,
    /// Hard bound on the whole run; DORAs still outstanding then count as unfinished.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    max_seconds: f64,
    /// Transaction id of the first DORA (default: derived from the process id, so a late reply
    /// to an earlier run is not mistaken for one of this run).
    #[arg(long, value_name = "XID")]
    xid_base: Option<u32>,
    /// Print the report as one JSON object on stdout (the summary line goes to stderr).
    #[arg(long)]
    json: bool,
}

/// The JSON document: the run's parameters and its report.
#[derive(Debug, Serialize)]
struct Output<'a> {
    mode: &'a str,
    clients: usize,
    count: u64,
    rate: Option<f64>,
    concurrency: usize,
    #[serde(flatten)]
    report: &'a Report,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            let _ = writeln!(io::stderr(), "dhcp-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    let macs = client_macs(&args)?;
    let (addressing, mut transport, mode) = match (&args.relay, &args.direct) {
        (Some(giaddr), _) => {
            let server = args
                .server
                .context("--relay needs --server ADDR (the DHCP server)")?;
            let t = Transport::Relay(
                relay_socket(*giaddr)?,
                SocketAddrV4::new(server, SERVER_PORT),
            );
            (Addressing::Relay { giaddr: *giaddr }, t, "relay")
        }
        (None, Some(ifname)) => {
            let socket = RawSocket::open_with_port(ifname, CLIENT_PORT)
                .with_context(|| format!("opening a raw socket on {ifname}"))?;
            (Addressing::Direct, Transport::Direct(socket), "direct")
        }
        (None, None) => bail!("give --relay GIADDR --server ADDR, or --direct IFNAME"),
    };
    if !(args.max_seconds.is_finite() && args.max_seconds > 0.0) {
        bail!("--max-seconds must be a positive number of seconds");
    }
    let config = LoadConfig {
        count: args.count.unwrap_or(macs.len() as u64),
        rate: args.rate,
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
        tries: args.tries,
        xid_base: args
            .xid_base
            .unwrap_or(std::process::id().wrapping_mul(0x9e37_79b9)),
        addressing,
        macs,
    };
    let clients = config.macs.len();
    let (count, rate, concurrency) = (config.count, config.rate, config.concurrency);

    let cpu_before = cpu_seconds()?;
    let start = clock();
    let hard_stop = start + Duration::from_secs_f64(args.max_seconds);
    let mut generator = Generator::new(config, start)?;
    event_loop(&mut generator, &mut transport, hard_stop)?;
    let mut report = generator.report(clock());
    report.generator_cpu_s = Some(cpu_seconds()? - cpu_before);

    let ok = report.counters.completed == report.counters.started;
    let mut stdout = io::stdout().lock();
    if args.json {
        let _ = writeln!(io::stderr(), "dhcp-load {mode}: {report}");
        let out = Output {
            mode,
            clients,
            count,
            rate,
            concurrency,
            report: &report,
        };
        writeln!(stdout, "{}", serde_json::to_string(&out)?)?;
    } else {
        writeln!(stdout, "dhcp-load {mode}: {report}")?;
    }
    Ok(ok)
}

/// Runs the generator until it is done or `hard_stop`.
fn event_loop(g: &mut Generator, t: &mut Transport, hard_stop: Instant) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let now = clock();
        while let Some(range) = t.recv(&mut buf)? {
            g.handle_reply(now, &buf[range]);
        }
        g.handle_timeout(now);
        while let Some(tx) = g.poll_transmit(now) {
            t.send(&tx)?;
        }
        if g.is_done() || now >= hard_stop {
            return Ok(());
        }
        let wake = g.poll_timeout().map_or(hard_stop, |w| w.min(hard_stop));
        let wait = wake.saturating_duration_since(clock());
        if !wait.is_zero() {
            wait_for(t.as_fd(), PollFlags::POLLIN, wait)?;
        }
    }
}

/// Where requests go and replies come from.
enum Transport {
    Relay(UdpSocket, SocketAddrV4),
    Direct(RawSocket),
}

impl Transport {
    /// Sends one request; waits (bounded) for room in the socket buffer if it is full.
    fn send(&mut self, tx: &Transmit) -> anyhow::Result<()> {
        let frame = match self {
            Self::Relay(..) => Vec::new(),
            Self::Direct(_) => packet::encode_broadcast_frame(tx.mac, &tx.payload),
        };
        let attempt = |t: &Self| match t {
            Self::Relay(socket, server) => socket.send_to(&tx.payload, *server).map(drop),
            Self::Direct(socket) => socket.send(&frame),
        };
        // Full socket buffers show up as WouldBlock (UDP) or ENOBUFS (packet sockets).
        for _ in 0..1000 {
            match attempt(self) {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e).context("sending a request"),
            }
            wait_for(self.as_fd(), PollFlags::POLLOUT, Duration::from_millis(1))?;
        }
        bail!("the socket's send buffer stayed full for over a second")
    }

    /// Receives one reply without blocking: where its UDP payload sits in `buf`, or `None`
    /// when nothing is queued.
    fn recv(&mut self, buf: &mut [u8]) -> anyhow::Result<Option<Range<usize>>> {
        loop {
            match self {
                Self::Relay(socket, _) => match socket.recv_from(buf) {
                    Ok((n, _)) => return Ok(Some(0..n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("receiving a reply"),
                },
                Self::Direct(socket) => match socket.recv(buf).context("receiving a reply")? {
                    None => return Ok(None),
                    Some((_, PacketType::Outgoing)) => {}
                    Some((n, _)) => {
                        // The kernel filter passes IPv4/UDP to port 68 only; anything else that
                        // slips through (a truncated or odd frame) is skipped.
                        let frame = &buf[..n];
                        if let Some(payload) = packet::udp_payload_to_port(frame, CLIENT_PORT) {
                            let offset = payload.as_ptr() as usize - frame.as_ptr() as usize;
                            return Ok(Some(offset..offset + payload.len()));
                        }
                    }
                },
            }
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Relay(socket, _) => socket.as_fd(),
            Self::Direct(socket) => socket.as_fd(),
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

/// The relay agent's socket: `GIADDR:67`, non-blocking, with large buffers.
fn relay_socket(giaddr: Ipv4Addr) -> anyhow::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    let local = SocketAddr::V4(SocketAddrV4::new(giaddr, SERVER_PORT));
    socket.bind(&local.into()).with_context(|| {
        format!("binding {local}: run as root, with {giaddr} on a local interface, and nothing else on port 67 there")
    })?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Waits up to `timeout` for `events` on `fd`.
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> anyhow::Result<()> {
    let mut fds = [PollFd::new(fd, events)];
    match ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e).context("waiting on the socket"),
    }
}

/// The clients' MACs from --macs or --clients/--mac-base.
fn client_macs(args: &Args) -> anyhow::Result<Vec<MacAddr>> {
    if let Some(path) = &args.macs {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading MAC list {}", path.display()))?;
        let mut macs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                let mac = line
                    .parse()
                    .with_context(|| format!("{}:{}", path.display(), n + 1))?;
                macs.push(mac);
            }
        }
        return Ok(macs);
    }
    let Some(n) = args.clients else {
        bail!("give the clients: --macs FILE (one MAC per line) or --clients N [--mac-base MAC]");
    };
    let base = args.mac_base.octets();
    let base = u64::from_be_bytes([0, 0, base[0], base[1], base[2], base[3], base[4], base[5]]);
    if base + u64::from(n) > 1 << 48 {
        bail!(
            "--clients {n} from --mac-base {} runs past FF:FF:FF:FF:FF:FF",
            args.mac_base
        );
    }
    Ok((0..u64::from(n))
        .map(|i| {
            let b = (base + i).to_be_bytes();
            MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
        })
        .collect())
}

/// This process's CPU time so far (user + system), seconds.
fn cpu_seconds() -> anyhow::Result<f64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage")?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// The driver reads the clock; the generator only ever gets `now` passed in.
#[allow(clippy::disallowed_methods)]
fn clock() -> Instant {
    Instant::now()
}
