//! AF_PACKET raw sockets: whole Ethernet frames in and out of one interface.
//!
//! DHCP clients without an address can only be answered with hand-built frames, and their
//! broadcasts must be seen whatever the host's IP configuration is, so `netbootd` serves each
//! `[[interface]]` through a packet socket. The socket receives only IPv4/UDP frames to one
//! destination port (67 for the server): a classic BPF program ([`udp_dst_port_filter`]) runs in
//! the kernel, so the daemon never wakes up for the rest of the link's traffic.
//!
//! Opening follows the order that avoids the classic race of packet sockets (frames queued
//! before the filter is attached):
//! 1. `socket(AF_PACKET, SOCK_RAW, 0)`: protocol 0 receives nothing yet;
//! 2. attach the filter (`SO_ATTACH_FILTER`);
//! 3. `bind` to the interface index with protocol `ETH_P_IP`: only now do frames arrive, and
//!    every one has passed the filter;
//! 4. drain whatever is queued anyway (belt and braces: a frame that arrived in the microseconds
//!    since `bind` is lost, and its client retransmits).
//!
//! The socket is non-blocking; [`RawSocket::recv`] returns `Ok(None)` when nothing is queued.
//! It implements [`AsRawFd`]/[`AsFd`] so a driver can wait on it with `tokio::io::unix::AsyncFd`.
//!
//! Frame layout (Ethernet/IPv4/UDP headers, checksums) is not handled here: see
//! [`crate::dhcp::frame`].
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use ims_proto::MacAddr;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

/// EtherType of IPv4, in host order.
const ETH_P_IP: u16 = 0x0800;
/// The server's UDP port.
const DHCP_SERVER_PORT: u16 = 67;
/// Receive buffer we ask for, so a burst of a few thousand requests is not dropped by the kernel
/// while the driver is busy committing. Capped by `net.core.rmem_max` unless we may force it.
const RECV_BUFFER_BYTES: usize = 4 << 20;
/// Send buffer we ask for, so a burst of replies fits while the NIC drains them.
const SEND_BUFFER_BYTES: usize = 4 << 20;

/// How the kernel classified a received frame (`sll_pkttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this host (`PACKET_HOST`).
    Host,
    /// Link-layer broadcast (`PACKET_BROADCAST`).
    Broadcast,
    /// Link-layer multicast (`PACKET_MULTICAST`).
    Multicast,
    /// Addressed to another host, seen in promiscuous mode (`PACKET_OTHERHOST`).
    OtherHost,
    /// Sent by this host (`PACKET_OUTGOING`): a driver ignores these.
    Outgoing,
    /// Any other value.
    Other(u8),
}

impl PacketType {
    fn from_raw(value: u8) -> Self {
        match value {
            libc::PACKET_HOST => Self::Host,
            libc::PACKET_BROADCAST => Self::Broadcast,
            libc::PACKET_MULTICAST => Self::Multicast,
            libc::PACKET_OTHERHOST => Self::OtherHost,
            libc::PACKET_OUTGOING => Self::Outgoing,
            other => Self::Other(other),
        }
    }
}

/// One classic BPF instruction, in the layout of `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

// Classic BPF opcode parts (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
const BPF_JEQ: u16 = 0x10;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

/// Bytes of an accepted frame passed to the socket (all of it).
const ACCEPT_ALL: u32 = 0x0004_0000;

const fn stmt(code: u16, k: u32) -> BpfInsn {
    BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// The classic BPF program accepting exactly the Ethernet II frames that carry an unfragmented
/// IPv4/UDP datagram to `port`; everything else is dropped in the kernel.
///
/// ```text
/// 0: ldh [12]                 ; EtherType
/// 1: jeq #0x0800, 2, 9        ; IPv4?
/// 2: ldb [23]                 ; IPv4 protocol
/// 3: jeq #17, 4, 9            ; UDP?
/// 4: ldh [20]                 ; flags + fragment offset
/// 5: jset #0x3fff, 9, 6       ; MF set or offset != 0: a fragment
/// 6: ldxb 4*([14]&0xf)        ; X = IPv4 header length
/// 7: ldh [x+16]               ; UDP destination port (14 + IHL + 2)
/// 8: jeq #port, 10, 9
/// 9: ret #0                   ; drop
/// 10: ret #0x40000            ; accept the whole frame
/// ```
pub fn udp_dst_port_filter(port: u16) -> [BpfInsn; 11] {
    [
        stmt(BPF_LD | BPF_H | BPF_ABS, 12),
        jump(BPF_JMP | BPF_JEQ | BPF_K, u32::from(ETH_P_IP), 0, 7),
        stmt(BPF_LD | BPF_B | BPF_ABS, 23),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 5),
        stmt(BPF_LD | BPF_H | BPF_ABS, 20),
        jump(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, 3, 0),
        stmt(BPF_LDX | BPF_B | BPF_MSH, 14),
        stmt(BPF_LD | BPF_H | BPF_IND, 16),
        jump(BPF_JMP | BPF_JEQ | BPF_K, u32::from(port), 1, 0),
        stmt(BPF_RET | BPF_K, 0),
        stmt(BPF_RET | BPF_K, ACCEPT_ALL),
    ]
}

/// A non-blocking AF_PACKET socket bound to one interface, receiving only IPv4/UDP frames to one
/// destination port and sending whole Ethernet frames.
#[derive(Debug)]
pub struct RawSocket {
    socket: Socket,
    ifname: String,
    ifindex: u32,
    mac: MacAddr,
}

/// An error naming the interface, with advice when it is a permission problem.
fn socket_error(ifname: &str, what: &str, err: io::Error) -> io::Error {
    let advice = match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            ": netbootd needs CAP_NET_RAW for raw sockets (run as root, or grant it with \
             `setcap cap_net_raw,cap_net_bind_service+ep` or systemd AmbientCapabilities)"
        }
        Some(libc::ENODEV | libc::ENXIO) => ": no such interface; check [[interface]] name",
        Some(libc::ENETDOWN) => ": the interface is down; bring it up (`ip link set <if> up`)",
        _ => "",
    };
    io::Error::new(
        err.kind(),
        format!("interface {ifname}: {what}: {err}{advice}"),
    )
}

impl RawSocket {
    /// Open a DHCP server socket on `ifname`: receives IPv4/UDP frames to port 67.
    ///
    /// # Errors
    /// When the interface does not exist, the process lacks `CAP_NET_RAW`, or the kernel refuses
    /// a step; the message names the interface and the step.
    pub fn open(ifname: &str) -> io::Result<Self> {
        Self::open_with_port(ifname, DHCP_SERVER_PORT)
    }

    /// Open a socket on `ifname` receiving IPv4/UDP frames to `udp_dst_port` (e.g. 68 for a
    /// client-side load generator).
    ///
    /// # Errors
    /// As [`RawSocket::open`].
    pub fn open_with_port(ifname: &str, udp_dst_port: u16) -> io::Result<Self> {
        let ifindex = interface_index(ifname)?;
        // Protocol 0: the socket is not hooked into the receive path until `bind` gives it one,
        // so nothing is queued before the filter is in place.
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(0)),
        )
        .map_err(|e| socket_error(ifname, "creating AF_PACKET socket", e))?;

        let program: Vec<SockFilter> = udp_dst_port_filter(udp_dst_port)
            .iter()
            .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect();
        socket
            .attach_filter(&program)
            .map_err(|e| socket_error(ifname, "attaching the BPF filter", e))?;

        // Kernel metadata with every frame: whether its checksum is still to be computed.
        set_int_option(&socket, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(|e| socket_error(ifname, "enabling PACKET_AUXDATA", e))?;

        // Larger buffers ride out request storms; failure only means the kernel defaults stay.
        if set_int_option(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            RECV_BUFFER_BYTES,
        )
        .is_err()
        {
            let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
        }
        if set_int_option(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            SEND_BUFFER_BYTES,
        )
        .is_err()
        {
            let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
        }

        let addr = link_addr(ifindex, None);
        // SAFETY: `addr` is a fully initialised `sockaddr_ll` living across the call, and the
        // length passed is exactly its size; `bind` only reads it. The fd is open (owned by
        // `socket`).
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                sockaddr_ll_len(),
            )
        };
        if rc != 0 {
            return Err(socket_error(
                ifname,
                "binding the packet socket",
                io::Error::last_os_error(),
            ));
        }

        let mac = hardware_address(&socket, ifname)?;
        let this = Self {
            socket,
            ifname: ifname.to_owned(),
            ifindex,
            mac,
        };
        this.drain();
        Ok(this)
    }

    /// Discard whatever is queued (see the module docs for why).
    fn drain(&self) {
        let mut scratch = [0u8; 2048];
        // Bounded: the queue only holds what arrived since `bind`.
        for _ in 0..4096 {
            match self.recv(&mut scratch) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's kernel index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's hardware address (read once, at open).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Receive one frame into `buf` without blocking.
    ///
    /// Returns the frame length (at most `buf.len()`; longer frames are truncated) and how the
    /// kernel classified it, or `None` when nothing is queued.
    ///
    /// # Errors
    /// Whatever `recvfrom` reports other than "would block", e.g. `ENETDOWN` after the interface
    /// went down.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, PacketType)>> {
        match self.recv_frame(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`RawSocket::recv`], with "nothing queued" as a `WouldBlock` error (the shape
    /// `AsyncFd::try_io` expects).
    ///
    /// A frame whose UDP checksum the kernel has not computed yet (`TP_STATUS_CSUMNOTREADY`:
    /// sent from this host with checksum offload, e.g. by a UDP socket over a veth) carries only
    /// a partial sum there; its checksum field is zeroed ("no checksum" in IPv4), so a parser
    /// that verifies checksums accepts what the kernel's own stack would.
    ///
    /// # Errors
    /// `WouldBlock` when nothing is queued; otherwise as [`RawSocket::recv`].
    pub fn recv_frame(&self, buf: &mut [u8]) -> io::Result<(usize, PacketType)> {
        // SAFETY: all-zero bytes are a valid `sockaddr_ll` (plain integers and arrays).
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: buf.len(),
        };
        // u64 elements: aligned for `cmsghdr`; room for one `tpacket_auxdata` with margin.
        let mut control = [0u64; 16];
        // SAFETY: all-zero bytes are a valid `msghdr` (null pointers and zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&raw mut from).cast::<libc::c_void>();
        msg.msg_namelen = sockaddr_ll_len();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
        msg.msg_controllen = size_of_val(&control) as _;
        let n = loop {
            // SAFETY: `msg` points to live, correctly sized buffers: one iovec over `buf`, the
            // `sockaddr_ll` `from` and the `control` array, all outliving the call; the kernel
            // writes within the lengths given and updates the lengths in `msg`.
            let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut msg, 0) };
            if n >= 0 {
                break usize::try_from(n).unwrap_or(0).min(buf.len());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        let mut checksum_not_ready = false;
        // SAFETY: CMSG_LEN is pure arithmetic on its argument; it dereferences nothing.
        let wanted = unsafe { libc::CMSG_LEN(socklen_of::<libc::tpacket_auxdata>()) };
        // SAFETY: `msg` was filled in by a successful `recvmsg`, so its control pointer and
        // length describe the initialised part of `control`.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null pointer from CMSG_FIRSTHDR/CMSG_NXTHDR points to a complete
            // `cmsghdr` inside `control` (the macros check the bounds).
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_PACKET
                && header.cmsg_type == libc::PACKET_AUXDATA
                && header.cmsg_len as usize >= wanted as usize
            {
                // SAFETY: the header says its data holds a whole `tpacket_auxdata` (plain
                // integers, valid for any bits) within `control`; it may be unaligned.
                let aux = unsafe {
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>())
                };
                checksum_not_ready = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            // SAFETY: `cmsg` is a valid header inside the control buffer described by `msg`.
            cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
        }
        if checksum_not_ready {
            clear_udp_checksum(&mut buf[..n]);
        }
        Ok((n, PacketType::from_raw(from.sll_pkttype)))
    }

    /// Send one complete Ethernet frame out of the interface, without blocking.
    ///
    /// # Errors
    /// `WouldBlock` when the socket's send buffer is full; otherwise whatever `sendto` reports
    /// (e.g. `ENETDOWN`, `EMSGSIZE`). A frame shorter than an Ethernet header is `InvalidInput`.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let Some(dst) = frame.get(..6) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame shorter than an Ethernet header",
            ));
        };
        let mut dst_mac = [0u8; 6];
        dst_mac.copy_from_slice(dst);
        let addr = link_addr(self.ifindex, Some(dst_mac));
        loop {
            // SAFETY: `frame` is a valid readable region of `frame.len()` bytes; `addr` is a
            // fully initialised `sockaddr_ll` of the length given; `sendto` only reads both.
            let n = unsafe {
                libc::sendto(
                    self.socket.as_raw_fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    0,
                    (&raw const addr).cast::<libc::sockaddr>(),
                    sockaddr_ll_len(),
                )
            };
            if n >= 0 {
                return if usize::try_from(n).ok() == Some(frame.len()) {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("interface {}: short write of a frame", self.ifname),
                    ))
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Register a shared raw socket with the current tokio runtime for read readiness.
///
/// # Errors
/// When the runtime's reactor refuses the registration.
///
/// # Panics
/// Outside a tokio runtime.
pub fn register_readable(
    socket: Arc<RawSocket>,
) -> io::Result<tokio::io::unix::AsyncFd<Arc<RawSocket>>> {
    // SAFETY: a `RawSocket` owns its fd (an `OwnedFd` inside `socket2::Socket`) and never closes
    // or replaces it while alive; the `AsyncFd` holds an `Arc` to it, so the fd stays open and
    // `as_raw_fd` returns the same value for the whole lifetime of the registration.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for RawSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Wait up to `timeout` for `fd` to accept more data (`poll(POLLOUT)`); `Ok(false)` on timeout.
/// Used by senders that met `WouldBlock` on a full socket send buffer.
///
/// # Errors
/// Whatever `poll` reports other than `EINTR`.
pub fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid, initialised `pollfd` and the count passed is 1; the fd is
        // kept open by the borrow for the duration of the call.
        let rc = unsafe { libc::poll(&raw mut pfd, 1, millis) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `if_nametoindex`, with an error naming the interface.
fn interface_index(ifname: &str) -> io::Result<u32> {
    let name = CString::new(ifname).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} contains a NUL byte"),
        )
    })?;
    // SAFETY: `name` is a valid NUL-terminated C string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "interface {ifname}: not found ({err}); check the [[interface]] name against \
                 `ip link`"
            ),
        ));
    }
    Ok(index)
}

/// Read the hardware address with `SIOCGIFHWADDR` (works in the socket's network namespace,
/// unlike `/sys/class/net`, which shows the namespace sysfs was mounted in).
fn hardware_address(socket: &Socket, ifname: &str) -> io::Result<MacAddr> {
    // SAFETY: all-zero bytes are a valid `ifreq` (integers, arrays and a union of such).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface {ifname}: name longer than {} bytes",
                req.ifr_name.len() - 1
            ),
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: `req` is a valid, NUL-terminated `ifreq` that the kernel fills in; the fd is open.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) };
    if rc != 0 {
        return Err(socket_error(
            ifname,
            "reading the hardware address",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: after a successful SIOCGIFHWADDR the kernel has written `ifru_hwaddr`.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = src.to_ne_bytes()[0];
    }
    Ok(MacAddr(mac))
}

/// `setsockopt` with an integer value (e.g. `SO_RCVBUFFORCE`, which needs CAP_NET_ADMIN and may
/// fail, or `PACKET_AUXDATA`).
fn set_int_option(
    socket: &Socket,
    level: libc::c_int,
    option: libc::c_int,
    value: usize,
) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live `c_int` and the length passed is its size; the kernel only reads
    // it. The fd is open.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const value).cast::<libc::c_void>(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Zero the UDP checksum of an Ethernet/IPv4/UDP frame (no-op for anything else or a frame too
/// short to hold it).
fn clear_udp_checksum(frame: &mut [u8]) {
    let is_udp = frame.get(12..14) == Some(&[0x08, 0x00]) && frame.get(23) == Some(&17);
    let Some(ihl) = frame.get(14).map(|b| usize::from(b & 0x0f) * 4) else {
        return;
    };
    if let (true, Some(field)) = (is_udp, frame.get_mut(14 + ihl + 6..14 + ihl + 8)) {
        field.copy_from_slice(&[0, 0]);
    }
}

/// A `sockaddr_ll` for interface `ifindex`, protocol IPv4, optionally with a destination MAC.
fn link_addr(ifindex: u32, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: all-zero bytes are a valid `sockaddr_ll` (plain integers and arrays).
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = ETH_P_IP.to_be();
    addr.sll_ifindex = libc::c_int::try_from(ifindex).unwrap_or(0);
    if let Some(mac) = dst {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}

fn sockaddr_ll_len() -> libc::socklen_t {
    socklen_of::<libc::sockaddr_ll>()
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions [`udp_dst_port_filter`] uses, with the
    /// kernel's semantics: an out-of-bounds load drops the packet.
    fn run(program: &[BpfInsn], packet: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut x: u32 = 0;
        let mut pc = 0usize;
        let load = |off: usize, size: usize| -> Option<u32> {
            let bytes = packet.get(off..off.checked_add(size)?)?;
            Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        };
        loop {
            let insn = program[pc];
            pc += 1;
            match insn.code {
                c if c == BPF_LD | BPF_H | BPF_ABS => match load(insn.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_B | BPF_ABS => match load(insn.k as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_H | BPF_IND => match load(x as usize + insn.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LDX | BPF_B | BPF_MSH => match load(insn.k as usize, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == insn.k { insn.jt } else { insn.jf });
                }
                c if c == BPF_JMP | BPF_JSET | BPF_K => {
                    pc += usize::from(if a & insn.k != 0 { insn.jt } else { insn.jf });
                }
                c if c == BPF_RET | BPF_K => return insn.k,
                other => panic!("opcode {other:#x} not modelled"),
            }
        }
    }

    /// An Ethernet/IPv4/UDP frame; `ihl` in 32-bit words, `frag` the flags/offset field.
    fn frame(ethertype: u16, proto: u8, ihl: u8, frag: u16, dst_port: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        let hdr_len = usize::from(ihl) * 4;
        let mut ip = vec![0u8; hdr_len];
        ip[0] = 0x40 | ihl;
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        f.extend_from_slice(&ip);
        f.extend_from_slice(&68u16.to_be_bytes());
        f.extend_from_slice(&dst_port.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f.extend_from_slice(&[0u8; 300]);
        f
    }

    #[test]
    fn accepts_udp_to_the_port_with_any_header_length() {
        let p = udp_dst_port_filter(67);
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 67)), ACCEPT_ALL);
        assert_eq!(run(&p, &frame(0x0800, 17, 6, 0, 67)), ACCEPT_ALL);
        assert_eq!(run(&p, &frame(0x0800, 17, 15, 0, 67)), ACCEPT_ALL);
        // DF set is not a fragment.
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0x4000, 67)), ACCEPT_ALL);
    }

    #[test]
    fn drops_other_ports_protocols_ethertypes_and_fragments() {
        let p = udp_dst_port_filter(67);
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 68)), 0);
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 80)), 0);
        // Port 67 at the fixed offset of a 20-byte header, but the header is 24 bytes long.
        let mut tricky = frame(0x0800, 17, 6, 0, 80);
        tricky[36..38].copy_from_slice(&67u16.to_be_bytes());
        assert_eq!(run(&p, &tricky), 0);
        assert_eq!(run(&p, &frame(0x0800, 6, 5, 0, 67)), 0, "TCP");
        assert_eq!(run(&p, &frame(0x86dd, 17, 5, 0, 67)), 0, "IPv6 EtherType");
        assert_eq!(run(&p, &frame(0x0806, 17, 5, 0, 67)), 0, "ARP");
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0x2000, 67)), 0, "MF");
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0x0001, 67)), 0, "offset");
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0x1fff, 67)), 0, "offset");
        // Truncated frames fail their loads.
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 67)[..35]), 0);
        assert_eq!(run(&p, &[]), 0);
    }

    #[test]
    fn port_is_a_parameter() {
        let p = udp_dst_port_filter(68);
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 68)), ACCEPT_ALL);
        assert_eq!(run(&p, &frame(0x0800, 17, 5, 0, 67)), 0);
    }

    #[test]
    fn every_jump_stays_inside_the_program() {
        let p = udp_dst_port_filter(67);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == BPF_JMP {
                assert!(i + 1 + usize::from(insn.jt) < p.len());
                assert!(i + 1 + usize::from(insn.jf) < p.len());
            }
        }
        assert_eq!(p.last().map(|i| i.code), Some(BPF_RET | BPF_K));
    }

    #[test]
    fn clearing_the_checksum_touches_only_the_udp_checksum_field() {
        let original = frame(0x0800, 17, 6, 0, 67);
        let mut f = original.clone();
        // Checksum field of a 24-byte IPv4 header: 14 + 24 + 6.
        f[44] = 0xab;
        f[45] = 0xcd;
        clear_udp_checksum(&mut f);
        assert_eq!(f, original);
        let mut tcp = frame(0x0800, 6, 5, 0, 67);
        tcp[40] = 0xab;
        let before = tcp.clone();
        clear_udp_checksum(&mut tcp);
        assert_eq!(tcp, before, "not UDP: untouched");
        let mut short = frame(0x0800, 17, 15, 0, 67)[..60].to_vec();
        let before = short.clone();
        clear_udp_checksum(&mut short);
        assert_eq!(short, before, "field beyond the end: untouched");
        clear_udp_checksum(&mut []);
    }

    #[test]
    fn permission_errors_say_which_capability() {
        let err = socket_error(
            "eth7",
            "creating AF_PACKET socket",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("interface eth7: creating AF_PACKET socket"),
            "{text}"
        );
        assert!(text.contains("CAP_NET_RAW"), "{text}");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let down = socket_error("eth7", "x", io::Error::from_raw_os_error(libc::ENETDOWN));
        assert!(down.to_string().contains("ip link set"), "{down}");
    }

    #[test]
    fn missing_interface_is_named() {
        let err = RawSocket::open("nb-no-such-if0").expect_err("no such interface");
        assert!(err.to_string().contains("nb-no-such-if0"), "{err}");
    }
}
