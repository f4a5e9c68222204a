//! Windows of DATA in few system calls: consecutive DATA packets of one transfer are gathered
//! into a [`DataRun`] and sent with UDP generic segmentation offload (`UDP_SEGMENT`, Linux
//! 4.18): one `sendmsg` whose iovecs alternate the 4-byte block headers and slices of the shared
//! file [`Bytes`], with a control message telling the kernel to cut the payload into datagrams
//! of `4 + blksize` bytes (the last one may be shorter). The kernel then builds, routes and
//! queues one large packet instead of a window of small ones; it is segmented in the device (or
//! in software just before it, or in the receiving socket on a veth pair or loopback), and the
//! client receives the same datagrams as from separate sends.
//!
//! Limits: at most [`MAX_SEGMENTS`] segments and [`MAX_GSO_PAYLOAD`] bytes per send, so a
//! run is split into several sends ([`DataRun::take_front`]); a block size whose segments
//! would not fit twice (loopback's 65464) is sent packet by packet. A socket whose GSO send is
//! refused ([`is_gso_refusal`]: no checksum offload on the route, IPsec, a segment larger than
//! the path MTU, an old kernel) falls back to one send per packet for the rest of its life.
//!
//! [`Coalescer`] builds the runs from the core's `Send` commands, in order: a run grows while
//! the next command is the next block of the same transfer to the same peer, right after the
//! previous one in the file, and every block so far is full-sized.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::ops::Range;

use bytes::Bytes;

use super::files::data_header;
use crate::tftp::Source;

/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`, 64 before Linux 6.10).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Largest UDP payload of one send over IPv4 (65535 − 20-byte IP header − 8-byte UDP header);
/// IPv6 allows a little more, this bound is kept for both.
pub(crate) const MAX_GSO_PAYLOAD: usize = 65_507;
/// Most blocks gathered into one run (a window is at most 64 blocks; this only bounds memory).
const MAX_RUN: usize = 1024;
/// The size of a DATA header.
const HEADER: usize = 4;

/// Consecutive DATA blocks of one transfer: wire blocks `first`, `first + 1`, … (wrapping past
/// 65535 to 0), `count` of them; block `i` carries `payload[i * blksize ..]`, `blksize` bytes
/// except the last block, which holds the rest (possibly nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataRun {
    /// Wire number of the first block.
    pub(crate) first: u16,
    /// Blocks in the run (at least 1).
    pub(crate) count: usize,
    /// Payload bytes of every block but the last.
    pub(crate) blksize: usize,
    /// The blocks' bytes, back to back: a slice of the shared file.
    pub(crate) payload: Bytes,
}

impl DataRun {
    /// Where block `i` of the run (`i < count`) lies in `payload`.
    pub(crate) fn range(&self, i: usize) -> Range<usize> {
        let start = i.saturating_mul(self.blksize).min(self.payload.len());
        let end = if i + 1 >= self.count {
            self.payload.len()
        } else {
            start.saturating_add(self.blksize).min(self.payload.len())
        };
        start..end
    }

    /// Wire number of block `i` of the run.
    pub(crate) fn block(&self, i: usize) -> u16 {
        // Wire numbers wrap (truncation intended).
        self.first.wrapping_add(i as u16)
    }

    /// Drop the first `n` blocks (all of them when `n ≥ count`).
    pub(crate) fn advance(&mut self, n: usize) {
        let n = n.min(self.count);
        let split = if n == self.count {
            self.payload.len()
        } else {
            self.range(n).start
        };
        self.first = self.block(n);
        self.count -= n;
        self.payload = self.payload.slice(split..);
    }

    /// The first `n` blocks (`1 ≤ n ≤ count`) as a run of their own, removed from `self`.
    pub(crate) fn take_front(&mut self, n: usize) -> Self {
        let n = n.clamp(1, self.count.max(1));
        let split = if n >= self.count {
            self.payload.len()
        } else {
            self.range(n).start
        };
        let front = Self {
            first: self.first,
            count: n.min(self.count),
            blksize: self.blksize,
            payload: self.payload.slice(..split),
        };
        self.advance(n);
        front
    }

    /// How many blocks of this run one send may carry: `segments_per_send(blksize)` with GSO,
    /// else 1.
    pub(crate) fn blocks_per_send(&self, gso: bool) -> usize {
        if gso {
            segments_per_send(self.blksize).min(self.count)
        } else {
            1
        }
    }

    /// The `UDP_SEGMENT` size of this run: a header plus a full block.
    pub(crate) fn segment_size(&self) -> u16 {
        u16::try_from(HEADER + self.blksize).unwrap_or(u16::MAX)
    }

    /// The iovecs of the run as [`Bytes`]: header, payload, header, payload, …
    pub(crate) fn buffers(&self) -> Vec<Bytes> {
        let mut buffers = Vec::with_capacity(self.count * 2);
        for i in 0..self.count {
            buffers.push(data_header(self.block(i)));
            buffers.push(self.payload.slice(self.range(i)));
        }
        buffers
    }
}

/// Blocks of `blksize` bytes that fit in one GSO send (1: GSO does not pay or does not fit).
pub(crate) fn segments_per_send(blksize: usize) -> usize {
    (MAX_GSO_PAYLOAD / (HEADER + blksize)).min(MAX_SEGMENTS)
}

/// Whether a failed GSO send means the kernel or the route refuses segmentation offload (then
/// the socket sends packet by packet): `EIO` (no checksum offload, IPsec), `EINVAL` (too many
/// segments, `SO_NO_CHECK`, a kernel without `UDP_SEGMENT`), `EMSGSIZE` (a segment or the
/// whole send too large for the route), `ENOPROTOOPT`/`EOPNOTSUPP`.
pub(crate) fn is_gso_refusal(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// The control message of a GSO send: one `cmsghdr` (`SOL_UDP`, `UDP_SEGMENT`) with the
/// segment size, padded to `CMSG_SPACE(2)`, aligned like a `cmsghdr`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct GsoControl([u8; CONTROL_SPACE]);

/// `CMSG_LEN(2)`: a `cmsghdr` is already padded to `size_t` alignment on Linux.
const CONTROL_LEN: usize = size_of::<libc::cmsghdr>() + size_of::<u16>();
/// `CMSG_SPACE(2)`: the length rounded up to `size_t`.
const CONTROL_SPACE: usize = CONTROL_LEN.next_multiple_of(size_of::<usize>());

impl GsoControl {
    /// The control message cutting the payload into segments of `segment` bytes.
    pub(crate) fn new(segment: u16) -> Self {
        let mut bytes = [0u8; CONTROL_SPACE];
        // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } then the data.
        let len_end = size_of::<usize>();
        bytes[..len_end].copy_from_slice(&CONTROL_LEN.to_ne_bytes());
        bytes[len_end..len_end + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
        bytes[len_end + 4..len_end + 8].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
        let data = size_of::<libc::cmsghdr>();
        bytes[data..data + 2].copy_from_slice(&segment.to_ne_bytes());
        Self(bytes)
    }
}

impl AsRef<[u8]> for GsoControl {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A run being gathered from `Send` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRun {
    /// Socket the run leaves from.
    pub(crate) source: Source,
    /// Destination.
    pub(crate) peer: SocketAddr,
    /// Wire number of the first block.
    pub(crate) first: u16,
    /// Blocks so far.
    pub(crate) count: usize,
    /// Size of the first block: every block but the last has it.
    pub(crate) blksize: usize,
    /// File offset of the first block.
    pub(crate) offset: u64,
    /// Bytes of all blocks so far.
    pub(crate) len: u64,
}

impl PendingRun {
    fn accepts(
        &self,
        source: Source,
        peer: SocketAddr,
        block: u16,
        offset: u64,
        len: usize,
    ) -> bool {
        let full = self.len == self.count as u64 * self.blksize as u64 && self.blksize > 0;
        full && self.source == source
            && self.peer == peer
            && self.count < MAX_RUN
            && len <= self.blksize
            // Truncation intended: wire numbers wrap.
            && block == self.first.wrapping_add(self.count as u16)
            && Some(offset) == self.offset.checked_add(self.len)
    }
}

/// Gathers the DATA `Send`s of a drain of the core's commands into runs.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    pending: Option<PendingRun>,
}

impl Coalescer {
    /// Add DATA `block` (file bytes `offset .. offset + len`) from `source` to `peer`. Returns
    /// the run it cannot join, which must be sent now (before this block).
    pub(crate) fn push(
        &mut self,
        source: Source,
        peer: SocketAddr,
        block: u16,
        offset: u64,
        len: usize,
    ) -> Option<PendingRun> {
        if let Some(run) = &mut self.pending {
            if run.accepts(source, peer, block, offset, len) {
                run.count += 1;
                run.len += len as u64;
                return None;
            }
        }
        self.pending.replace(PendingRun {
            source,
            peer,
            first: block,
            count: 1,
            blksize: len,
            offset,
            len: len as u64,
        })
    }

    /// The run gathered so far, to be sent before any other command.
    pub(crate) fn take(&mut self) -> Option<PendingRun> {
        self.pending.take()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::tftp::TransferId;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], port))
    }

    const T1: Source = Source::Transfer(TransferId(1));
    const T2: Source = Source::Transfer(TransferId(2));

    #[test]
    fn a_window_of_one_transfer_becomes_one_run() {
        let mut c = Coalescer::default();
        for i in 0..16u16 {
            let offset = u64::from(i) * 1468;
            assert_eq!(c.push(T1, peer(7), 101 + i, offset, 1468), None);
        }
        let run = c.take().unwrap();
        assert_eq!((run.first, run.count, run.blksize), (101, 16, 1468));
        assert_eq!((run.offset, run.len), (0, 16 * 1468));
        assert_eq!(c.take(), None);
    }

    #[test]
    fn runs_break_where_blocks_stop_following_each_other() {
        let mut c = Coalescer::default();
        assert_eq!(c.push(T1, peer(7), 1, 0, 512), None);
        // Another transfer.
        let first = c.push(T2, peer(8), 1, 0, 512).unwrap();
        assert_eq!((first.source, first.count), (T1, 1));
        // Same transfer, other peer (a foreign TID would never get DATA; still kept apart).
        let second = c.push(T2, peer(9), 2, 512, 512).unwrap();
        assert_eq!((second.peer, second.count), (peer(8), 1));
        // A gap in the file, then a gap in the block numbers.
        assert!(c.push(T2, peer(9), 3, 2048, 512).is_some());
        assert!(c.push(T2, peer(9), 5, 2560, 512).is_some());
        // A longer block than the first.
        assert!(c.push(T2, peer(9), 6, 3072, 600).is_some());
        assert_eq!(c.take().unwrap().count, 1);
    }

    #[test]
    fn a_short_block_ends_its_run_and_numbers_wrap() {
        let mut c = Coalescer::default();
        let base = 65_534u64 * 1000;
        assert_eq!(c.push(T1, peer(7), 65_535, base, 1000), None);
        assert_eq!(c.push(T1, peer(7), 0, base + 1000, 1000), None);
        assert_eq!(c.push(T1, peer(7), 1, base + 2000, 10), None);
        // After the short block nothing may join.
        let run = c.push(T1, peer(7), 2, base + 2010, 0).unwrap();
        assert_eq!((run.first, run.count, run.len), (65_535, 3, 2010));
        let last = c.take().unwrap();
        assert_eq!((last.first, last.count, last.len), (2, 1, 0));
    }

    fn run(first: u16, blocks: &[usize]) -> DataRun {
        let total: usize = blocks.iter().sum();
        let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        DataRun {
            first,
            count: blocks.len(),
            blksize: blocks[0],
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn runs_split_at_block_boundaries() {
        let mut r = run(65_534, &[100, 100, 100, 40]);
        assert_eq!(r.range(3), 300..340);
        assert_eq!(r.block(2), 0);
        let front = r.take_front(2);
        assert_eq!(
            (front.first, front.count, front.payload.len()),
            (65_534, 2, 200)
        );
        assert_eq!((r.first, r.count, r.payload.len()), (0, 2, 140));
        assert_eq!(r.range(1), 100..140);
        assert_eq!(r.payload[0], 200, "the payload moved with the blocks");
        r.advance(5);
        assert_eq!((r.count, r.payload.len()), (0, 0));

        // An empty last block.
        let mut r = run(9, &[50, 50, 0]);
        assert_eq!(r.range(2), 100..100);
        let bufs = r.buffers();
        assert_eq!(bufs.len(), 6);
        assert_eq!(&bufs[4][..], &[0, 3, 0, 11]);
        assert!(bufs[5].is_empty());
        let front = r.take_front(3);
        assert_eq!((front.count, r.count), (3, 0));
    }

    #[test]
    fn sends_respect_the_kernel_limits() {
        assert_eq!(segments_per_send(1468), 44);
        const { assert!(44 * (1468 + 4) <= MAX_GSO_PAYLOAD) };
        assert_eq!(segments_per_send(512), MAX_SEGMENTS);
        assert_eq!(segments_per_send(65_464), 1);
        assert_eq!(segments_per_send(32_000), 2);
        let r = run(1, &[1468; 16]);
        assert_eq!(r.blocks_per_send(true), 16);
        assert_eq!(r.blocks_per_send(false), 1);
        assert_eq!(r.segment_size(), 1472);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_control_message_is_a_udp_segment_cmsghdr() {
        let c = GsoControl::new(1472);
        let b = c.as_ref();
        assert_eq!(b.len(), 24, "CMSG_SPACE(2)");
        assert_eq!(
            usize::from_ne_bytes(b[..8].try_into().unwrap()),
            18,
            "CMSG_LEN(2)"
        );
        assert_eq!(
            i32::from_ne_bytes(b[8..12].try_into().unwrap()),
            libc::SOL_UDP
        );
        assert_eq!(i32::from_ne_bytes(b[12..16].try_into().unwrap()), 103);
        assert_eq!(u16::from_ne_bytes([b[16], b[17]]), 1472);
        assert_eq!(b.as_ptr() as usize % 8, 0);
    }

    /// A run over loopback: a receiver socket, the run to send (blocks of 1000 bytes, numbers
    /// wrapping, 50 full blocks plus an empty one: two GSO sends).
    pub(crate) fn loopback_run() -> (UdpSocket, DataRun) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut blocks = vec![1000; 50];
        blocks.push(0);
        (receiver, run(65_500, &blocks))
    }

    /// Receive `expected`'s datagrams, one per block, in order.
    pub(crate) fn receive_run(receiver: &UdpSocket, expected: &DataRun) {
        let mut buf = [0u8; 2048];
        for i in 0..expected.count {
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            let block = expected.block(i);
            assert_eq!(
                &buf[..4],
                &[0, 3, (block >> 8) as u8, block as u8],
                "block {i}"
            );
            assert_eq!(
                &buf[4..n],
                &expected.payload[expected.range(i)],
                "block {i}"
            );
        }
    }

    /// Make `socket` send UDP without checksums (`SO_NO_CHECK`), which the kernel refuses to
    /// combine with GSO (`EINVAL`): a way to see the fallback.
    #[allow(unsafe_code)]
    pub(crate) fn refuse_gso(socket: &impl std::os::fd::AsRawFd) {
        let one: libc::c_int = 1;
        // SAFETY: a valid descriptor, a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    }
}
