//! A small TFTP client of our own, for what real clients cannot do: requests with odd names (a
//! NUL byte, 1000 bytes, backslashes), write requests, netascii bytes as they are on the wire,
//! and a packet from a foreign port in the middle of a transfer.
//!
//! It speaks RFC 1350 with the option extension (RFC 2347), `blksize` (RFC 2348), `tsize`
//! (RFC 2349) and `windowsize` (RFC 7440), independently of the daemon's codec.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::netns;

/// Opcodes (RFC 1350, RFC 2347).
pub(crate) const RRQ: u16 = 1;
/// Write request.
pub(crate) const WRQ: u16 = 2;
/// Data block.
pub(crate) const DATA: u16 = 3;
/// Acknowledgement.
pub(crate) const ACK: u16 = 4;
/// Error.
pub(crate) const ERROR: u16 = 5;
/// Option acknowledgement.
pub(crate) const OACK: u16 = 6;

/// A packet from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pkt {
    /// DATA `block` with its payload.
    Data { block: u16, data: Vec<u8> },
    /// ACK (a server never sends one to a reader; kept for completeness).
    Ack { block: u16 },
    /// ERROR `code` with its message.
    Error { code: u16, msg: String },
    /// OACK with the granted options (names lower-cased).
    Oack(Vec<(String, String)>),
    /// Anything else, raw.
    Other(Vec<u8>),
}

impl Pkt {
    /// Decode a datagram.
    pub(crate) fn parse(b: &[u8]) -> Self {
        if b.len() < 2 {
            return Self::Other(b.to_vec());
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let arg = || b.get(2..4).map(|x| u16::from_be_bytes([x[0], x[1]]));
        match (op, arg()) {
            (DATA, Some(block)) => Self::Data {
                block,
                data: b[4..].to_vec(),
            },
            (ACK, Some(block)) => Self::Ack { block },
            (ERROR, Some(code)) => {
                let msg = &b[4..];
                let msg = msg.split(|&c| c == 0).next().unwrap_or(&[]);
                Self::Error {
                    code,
                    msg: String::from_utf8_lossy(msg).into_owned(),
                }
            }
            (OACK, _) => {
                let fields: Vec<String> = b[2..]
                    .split(|&c| c == 0)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                // A trailing NUL leaves an empty last field.
                let pairs = fields
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (c[0].to_ascii_lowercase(), c[1].clone()))
                    .collect();
                Self::Oack(pairs)
            }
            _ => Self::Other(b.to_vec()),
        }
    }
}

/// A request datagram: `opcode`, `name` (raw bytes: may hold anything), `mode`, options.
pub(crate) fn request(opcode: u16, name: &[u8], mode: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = opcode.to_be_bytes().to_vec();
    p.extend_from_slice(name);
    p.push(0);
    p.extend_from_slice(mode.as_bytes());
    p.push(0);
    for (k, v) in opts {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

/// An ACK datagram.
pub(crate) fn ack(block: u16) -> Vec<u8> {
    let mut p = ACK.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p
}

/// An ERROR datagram.
pub(crate) fn error(code: u16, msg: &str) -> Vec<u8> {
    let mut p = ERROR.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// A UDP socket in the client namespace, on an ephemeral port.
#[derive(Debug)]
pub(crate) struct UdpClient {
    sock: UdpSocket,
}

impl UdpClient {
    /// Bind `0.0.0.0:0` inside namespace `ns`.
    pub(crate) fn open(ns: &str) -> Self {
        let sock = netns::run_in(ns, || {
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        })
        .unwrap_or_else(|e| panic!("cannot open a UDP socket in {ns}: {e}"));
        Self { sock }
    }

    /// Bind `addr` (an address of the namespace, port 0 for any) inside namespace `ns`.
    pub(crate) fn open_at(ns: &str, addr: SocketAddrV4) -> Self {
        let sock = netns::run_in(ns, move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("cannot bind a UDP socket to {addr} in {ns}: {e}"));
        Self { sock }
    }

    /// The socket's local port.
    pub(crate) fn port(&self) -> u16 {
        self.sock.local_addr().map_or(0, |a| a.port())
    }

    /// Send a datagram.
    pub(crate) fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.sock
            .send_to(bytes, to)
            .unwrap_or_else(|e| panic!("send {} bytes to {to}: {e}", bytes.len()));
    }

    /// The next datagram within `timeout`, decoded, with its source.
    pub(crate) fn recv(&self, timeout: Duration) -> Option<(Pkt, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => return Some((Pkt::parse(&buf[..n]), from)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Send `req` to `server` and wait for the first answer (retransmitting every second),
    /// at most `timeout`.
    pub(crate) fn ask(
        &self,
        req: &[u8],
        server: SocketAddr,
        timeout: Duration,
    ) -> Option<(Pkt, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.send(req, server);
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            if let Some(r) = self.recv(wait) {
                return Some(r);
            }
        }
        None
    }
}

/// Why [`fetch`] did not get the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// The server answered with ERROR `code`.
    Refused { code: u16, msg: String },
    /// Anything else (timeouts, protocol violations), described.
    Failed(String),
}

/// A finished download.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    /// The bytes as they came off the wire (netascii stays converted).
    pub(crate) data: Vec<u8>,
    /// The granted options, if the server sent an OACK.
    pub(crate) oack: Option<Vec<(String, String)>>,
    /// The server's transfer port (TID).
    pub(crate) tid: SocketAddr,
    /// DATA packets received, duplicates included.
    pub(crate) data_packets: u64,
    /// ACKs we sent.
    pub(crate) acks_sent: u64,
}

impl Fetched {
    /// The value of a granted option.
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.oack
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Download `name` from `server` (port 69) in `mode` asking for `opts`, as an RFC 7440 client:
/// ACK every `windowsize` in-order blocks and the last one, re-ACK the last in-order block on a
/// gap or after 1 s of silence (at most 8 times in a row). `hook(blocks, tid)` runs after each
/// in-order DATA block, before its ACK. Bounded by `timeout`.
pub(crate) fn fetch(
    client: &UdpClient,
    server: SocketAddr,
    name: &[u8],
    mode: &str,
    opts: &[(&str, &str)],
    timeout: Duration,
    mut hook: impl FnMut(u64, SocketAddr),
) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + timeout;
    let rrq = request(RRQ, name, mode, opts);
    let failed = |s: String| Err(FetchError::Failed(s));
    let (first, tid) = client
        .ask(&rrq, server, Duration::from_secs(5).min(timeout))
        .ok_or_else(|| FetchError::Failed(format!("no answer to RRQ {:?}", name_str(name))))?;
    let mut out = Fetched {
        data: Vec::new(),
        oack: None,
        tid,
        data_packets: 0,
        acks_sent: 0,
    };
    let mut blksize = 512usize;
    let mut window = 1u64;
    let mut last: u16 = 0;
    let mut blocks = 0u64;
    let mut in_window = 0u64;
    let mut pending = Some(first);
    let mut silent = 0u32;
    let mut reacked = false;
    loop {
        if Instant::now() >= deadline {
            return failed(format!(
                "transfer of {:?} not finished within {timeout:?} ({} bytes, block {last})",
                name_str(name),
                out.data.len()
            ));
        }
        let pkt = match pending.take() {
            Some(p) => Some(p),
            None => match client.recv(Duration::from_secs(1)) {
                Some((p, from)) if from == tid => Some(p),
                Some((p, from)) => {
                    return failed(format!("packet from {from}, not the TID {tid}: {p:?}"));
                }
                None => None,
            },
        };
        match pkt {
            None => {
                silent += 1;
                if silent > 8 {
                    return failed(format!(
                        "server went silent after block {last} ({} bytes)",
                        out.data.len()
                    ));
                }
                client.send(&ack(last), tid);
                out.acks_sent += 1;
                in_window = 0;
            }
            Some(Pkt::Oack(o)) if blocks == 0 => {
                silent = 0;
                if out.oack.is_some() {
                    // Our ACK 0 was lost and the server resent its OACK.
                    client.send(&ack(0), tid);
                    out.acks_sent += 1;
                    continue;
                }
                for (k, v) in &o {
                    match k.as_str() {
                        "blksize" => {
                            blksize = v
                                .parse()
                                .map_err(|_| FetchError::Failed(format!("OACK blksize {v:?}")))?;
                        }
                        "windowsize" => {
                            window = v.parse().map_err(|_| {
                                FetchError::Failed(format!("OACK windowsize {v:?}"))
                            })?;
                        }
                        _ => {}
                    }
                }
                out.oack = Some(o);
                client.send(&ack(0), tid);
                out.acks_sent += 1;
            }
            Some(Pkt::Data { block, data }) => {
                silent = 0;
                out.data_packets += 1;
                if block == last.wrapping_add(1) {
                    if data.len() > blksize {
                        return failed(format!(
                            "block {block} carries {} bytes, more than blksize {blksize}",
                            data.len()
                        ));
                    }
                    last = block;
                    blocks += 1;
                    in_window += 1;
                    reacked = false;
                    let done = data.len() < blksize;
                    out.data.extend_from_slice(&data);
                    hook(blocks, tid);
                    if done {
                        client.send(&ack(block), tid);
                        out.acks_sent += 1;
                        // Linger briefly: a lost final ACK makes the server resend the block.
                        while let Some((p, _)) = client.recv(Duration::from_millis(200)) {
                            if matches!(p, Pkt::Data { block: b, .. } if b == block) {
                                client.send(&ack(block), tid);
                            }
                        }
                        return Ok(out);
                    }
                    if in_window >= window {
                        client.send(&ack(block), tid);
                        out.acks_sent += 1;
                        in_window = 0;
                    }
                } else if !reacked {
                    // A gap or a duplicate: tell the server where we are, once per stall.
                    client.send(&ack(last), tid);
                    out.acks_sent += 1;
                    in_window = 0;
                    reacked = true;
                }
            }
            Some(Pkt::Error { code, msg }) => return Err(FetchError::Refused { code, msg }),
            Some(other) => return failed(format!("unexpected packet {other:?}")),
        }
    }
}

/// Send a request and expect it refused: an ERROR within 5 s (retransmitting every second), and
/// no DATA or OACK from anywhere for 300 ms after it. Returns `(code, message)`.
///
/// # Errors
/// What arrived instead (DATA, OACK, nothing).
pub(crate) fn expect_refused(
    client: &UdpClient,
    server: SocketAddr,
    req: &[u8],
) -> Result<(u16, String), String> {
    let (first, from) = client
        .ask(req, server, Duration::from_secs(5))
        .ok_or_else(|| {
            "no answer within 5 s (the request must be refused with an ERROR)".to_owned()
        })?;
    let Pkt::Error { code, msg } = first else {
        return Err(format!("answered from {from} with {}", short(&first)));
    };
    if let Some((p, from)) = client.recv(Duration::from_millis(300)) {
        if !matches!(p, Pkt::Error { .. }) {
            return Err(format!(
                "ERROR {code} {msg:?}, then {} from {from}",
                short(&p)
            ));
        }
    }
    Ok((code, msg))
}

/// A packet, briefly (no megabytes of payload in messages).
pub(crate) fn short(p: &Pkt) -> String {
    match p {
        Pkt::Data { block, data } => format!("DATA block {block} ({} bytes)", data.len()),
        Pkt::Other(b) => format!("{} undecodable bytes", b.len()),
        p => format!("{p:?}"),
    }
}

fn name_str(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    if s.len() > 60 {
        format!("{}… ({} bytes)", &s[..60], name.len())
    } else {
        s.into_owned()
    }
}

/// LF → CR LF and CR → CR NUL: what a netascii transfer of `text` carries (RFC 764 via 1350).
pub(crate) fn to_netascii(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    for &b in text {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            b => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        assert_eq!(
            request(RRQ, b"a/b", "octet", &[("blksize", "1468")]),
            b"\x00\x01a/b\0octet\0blksize\x001468\0".to_vec()
        );
        assert_eq!(ack(258), vec![0, 4, 1, 2]);
        assert_eq!(
            Pkt::parse(b"\x00\x06blksize\x001468\0tsize\x0042\0"),
            Pkt::Oack(vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "42".into())
            ])
        );
        assert_eq!(
            Pkt::parse(&error(2, "no")),
            Pkt::Error {
                code: 2,
                msg: "no".into()
            }
        );
        assert_eq!(
            Pkt::parse(b"\x00\x03\x00\x07xyz"),
            Pkt::Data {
                block: 7,
                data: b"xyz".to_vec()
            }
        );
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c".to_vec());
    }
}
