//! A subnet's dynamic address pool: the configured range minus exclusions and reservations, with
//! deterministic allocation.
//!
//! The pool is two bitsets over the range, one bit per address:
//! - *unavailable*: never handed out dynamically (excluded ranges, every reserved address, the
//!   network and broadcast addresses, our own and the router's addresses); fixed at construction.
//! - *held*: currently bound, offered or quarantined; kept in step with the lease table by the
//!   server through [`Pool::set_held`].
//!
//! [`Pool::next_free`] scans from a rotating cursor word by word, so allocation is O(1) amortised
//! while the pool has room and O(range / 64) in the worst case; an exhausted pool answers in O(1)
//! from its free count. Allocation order depends only on the pool's history, never on hashing or
//! time, so a replayed input sequence hands out the same addresses.
//!
//! No method panics, whatever addresses it is given.

use std::net::Ipv4Addr;

/// Dynamic addresses of one subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// First address of the range.
    start: u32,
    /// Number of addresses in the range (at least 1).
    len: u32,
    /// Bit set: the address is never handed out dynamically. Bits past `len` are set.
    unavailable: Vec<u64>,
    /// Bit set: the address is bound, offered or quarantined.
    held: Vec<u64>,
    /// Offset where the next scan for a free address starts.
    cursor: u32,
    /// Addresses not unavailable.
    size: u64,
    /// Addresses neither unavailable nor held.
    free: u64,
}

impl Pool {
    /// A pool over the inclusive `range`, minus every address in `exclude` (inclusive ranges) and
    /// every address in `blocked` (reservations, our own addresses and the like). Addresses outside
    /// the range in `exclude` or `blocked` are ignored. A reversed range is read as its ascending
    /// form.
    pub fn new(
        range: (Ipv4Addr, Ipv4Addr),
        exclude: &[(Ipv4Addr, Ipv4Addr)],
        blocked: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Self {
        let (a, b) = (u32::from(range.0), u32::from(range.1));
        let (start, last) = if a <= b { (a, b) } else { (b, a) };
        // A full /0 range would be 2^32 addresses; clamp so `len` fits in u32 (never reached with
        // a validated config).
        let len = (last - start).saturating_add(1);
        let words = len.div_ceil(64) as usize;
        let mut pool = Self {
            start,
            len,
            unavailable: vec![0; words],
            held: vec![0; words],
            cursor: 0,
            size: 0,
            free: 0,
        };
        // Pad the last word so scans never return an offset past the range.
        let tail = len % 64;
        if tail != 0 {
            if let Some(w) = pool.unavailable.last_mut() {
                *w = !0u64 << tail;
            }
        }
        for &(x, y) in exclude {
            let (x, y) = (u32::from(x), u32::from(y));
            let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
            let lo = lo.max(start);
            let hi = hi.min(last);
            if lo > hi {
                continue;
            }
            for v in lo..=hi {
                pool.block(v - start);
            }
        }
        for ip in blocked {
            if let Some(off) = pool.offset(ip) {
                pool.block(off);
            }
        }
        let unavailable: u64 = pool
            .unavailable
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        pool.size = (words as u64 * 64).saturating_sub(unavailable);
        pool.free = pool.size;
        pool
    }

    fn block(&mut self, off: u32) {
        let (w, bit) = (off as usize / 64, off % 64);
        if let Some(word) = self.unavailable.get_mut(w) {
            *word |= 1 << bit;
        }
    }

    /// Offset of `ip` in the range, if inside it.
    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).checked_sub(self.start)?;
        (off < self.len).then_some(off)
    }

    fn bit(words: &[u64], off: u32) -> bool {
        words
            .get(off as usize / 64)
            .is_some_and(|w| w & (1 << (off % 64)) != 0)
    }

    /// First address of the range.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.start)
    }

    /// Last address of the range.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.start + (self.len - 1))
    }

    /// Whether `ip` lies in the range (available or not).
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip).is_some()
    }

    /// Whether `ip` may be handed out dynamically: in the range and neither excluded nor reserved.
    pub fn is_dynamic(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip)
            .is_some_and(|off| !Self::bit(&self.unavailable, off))
    }

    /// Whether `ip` is dynamic and not held.
    pub fn is_free(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip)
            .is_some_and(|off| !Self::bit(&self.unavailable, off) && !Self::bit(&self.held, off))
    }

    /// Mark `ip` held (bound, offered, quarantined) or not. Ignored outside the range; the held
    /// mark of an unavailable address is tracked but never makes it allocatable.
    pub fn set_held(&mut self, ip: Ipv4Addr, held: bool) {
        let Some(off) = self.offset(ip) else { return };
        let (w, bit) = (off as usize / 64, 1u64 << (off % 64));
        let dynamic = !Self::bit(&self.unavailable, off);
        let Some(word) = self.held.get_mut(w) else {
            return;
        };
        let was = *word & bit != 0;
        if was == held {
            return;
        }
        if held {
            *word |= bit;
            if dynamic {
                self.free = self.free.saturating_sub(1);
            }
        } else {
            *word &= !bit;
            if dynamic {
                self.free = self.free.saturating_add(1);
            }
        }
    }

    /// The next free address at or after the cursor, wrapping around; `None` when exhausted.
    pub fn next_free(&self) -> Option<Ipv4Addr> {
        if self.free == 0 {
            return None;
        }
        let words = self.held.len();
        let start_word = self.cursor as usize / 64;
        let start_bit = self.cursor % 64;
        // Visit the cursor's word (from the cursor bit), every other word, then the cursor's word
        // again (bits before the cursor).
        for step in 0..=words {
            let w = (start_word + step) % words;
            let mut taken = self.unavailable.get(w).copied().unwrap_or(!0)
                | self.held.get(w).copied().unwrap_or(!0);
            if step == 0 {
                taken |= (1u64 << start_bit) - 1;
            } else if step == words {
                taken |= !((1u64 << start_bit) - 1);
            }
            if taken != !0 {
                let off = (w as u32) * 64 + (!taken).trailing_zeros();
                return (off < self.len).then(|| Ipv4Addr::from(self.start + off));
            }
        }
        None
    }

    /// Move the cursor just past `ip` (after handing it out from [`Pool::next_free`]), so
    /// addresses rotate through the range instead of the lowest one being reused at once.
    pub fn advance_past(&mut self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            let next = off + 1;
            self.cursor = if next >= self.len { 0 } else { next };
        }
    }

    /// Addresses that can be handed out dynamically (range minus exclusions and reservations).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Dynamic addresses neither bound, offered nor quarantined.
    pub fn free(&self) -> u64 {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn size_excludes_exclusions_and_blocked() {
        let pool = Pool::new(
            (ip("10.0.0.10"), ip("10.0.0.29")),
            &[
                (ip("10.0.0.12"), ip("10.0.0.14")),
                (ip("10.0.0.5"), ip("10.0.0.10")),
            ],
            [ip("10.0.0.20"), ip("10.0.0.99"), ip("10.0.0.20")],
        );
        // 20 addresses - 3 (12..14) - 1 (10) - 1 (20).
        assert_eq!(pool.size(), 15);
        assert_eq!(pool.free(), 15);
        assert!(!pool.is_dynamic(ip("10.0.0.10")));
        assert!(!pool.is_dynamic(ip("10.0.0.13")));
        assert!(!pool.is_dynamic(ip("10.0.0.20")));
        assert!(pool.is_dynamic(ip("10.0.0.11")));
        assert!(!pool.is_dynamic(ip("10.0.0.30")));
        assert!(pool.in_range(ip("10.0.0.20")));
        assert_eq!(pool.first(), ip("10.0.0.10"));
        assert_eq!(pool.last(), ip("10.0.0.29"));
    }

    #[test]
    fn allocation_rotates_and_skips_held_and_unavailable() {
        let mut pool = Pool::new(
            (ip("10.0.0.1"), ip("10.0.0.5")),
            &[(ip("10.0.0.2"), ip("10.0.0.2"))],
            [],
        );
        let mut got = Vec::new();
        while let Some(a) = pool.next_free() {
            pool.set_held(a, true);
            pool.advance_past(a);
            got.push(a);
        }
        assert_eq!(
            got,
            [
                ip("10.0.0.1"),
                ip("10.0.0.3"),
                ip("10.0.0.4"),
                ip("10.0.0.5")
            ]
        );
        assert_eq!(pool.free(), 0);
        // Freeing one below the cursor: the scan wraps to find it.
        pool.set_held(ip("10.0.0.3"), false);
        assert_eq!(pool.next_free(), Some(ip("10.0.0.3")));
        pool.set_held(ip("10.0.0.3"), true);
        pool.advance_past(ip("10.0.0.3"));
        pool.set_held(ip("10.0.0.1"), false);
        pool.set_held(ip("10.0.0.5"), false);
        // Cursor is at .4: the next is .5, not .1.
        assert_eq!(pool.next_free(), Some(ip("10.0.0.5")));
    }

    #[test]
    fn held_marks_are_idempotent_and_ignore_outsiders() {
        let mut pool = Pool::new((ip("10.0.0.1"), ip("10.0.0.3")), &[], [ip("10.0.0.2")]);
        pool.set_held(ip("10.0.0.1"), true);
        pool.set_held(ip("10.0.0.1"), true);
        pool.set_held(ip("10.0.0.2"), true);
        pool.set_held(ip("10.9.9.9"), true);
        assert_eq!(pool.free(), 1);
        pool.set_held(ip("10.0.0.2"), false);
        pool.set_held(ip("10.0.0.1"), false);
        pool.set_held(ip("10.0.0.1"), false);
        assert_eq!(pool.free(), 2);
        assert!(!pool.is_free(ip("10.0.0.2")));
    }

    #[test]
    fn large_range_scans_across_words() {
        let mut pool = Pool::new((ip("10.1.0.0"), ip("10.1.255.255")), &[], []);
        assert_eq!(pool.size(), 65536);
        // Hold the first 1000 addresses: the next free is the 1001st even from cursor 0.
        for i in 0..1000u32 {
            pool.set_held(Ipv4Addr::from(u32::from(ip("10.1.0.0")) + i), true);
        }
        assert_eq!(pool.next_free(), Some(ip("10.1.3.232")));
        // Cursor near the end wraps to the start.
        pool.advance_past(ip("10.1.255.254"));
        assert_eq!(pool.next_free(), Some(ip("10.1.255.255")));
        pool.set_held(ip("10.1.255.255"), true);
        assert_eq!(pool.next_free(), Some(ip("10.1.3.232")));
    }

    #[test]
    fn single_address_and_reversed_range() {
        let mut pool = Pool::new((ip("10.0.0.9"), ip("10.0.0.9")), &[], []);
        assert_eq!(pool.next_free(), Some(ip("10.0.0.9")));
        pool.set_held(ip("10.0.0.9"), true);
        assert_eq!(pool.next_free(), None);
        let rev = Pool::new((ip("10.0.0.9"), ip("10.0.0.1")), &[], []);
        assert_eq!(rev.size(), 9);
    }
}
