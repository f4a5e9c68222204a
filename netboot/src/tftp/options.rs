//! Option negotiation (RFC 2347): `blksize` (RFC 2348), `timeout` and `tsize` (RFC 2349),
//! `windowsize` (RFC 7440).
//!
//! Options are read from the request when it arrives (so a queued request keeps them) and
//! granted once the file is open (`tsize` needs its size). Unknown options, repeated options
//! and options with invalid values are ignored, as RFC 2347 allows; the OACK lists the granted
//! options in the order the client sent them.

use std::time::Duration;

use super::TftpLimits;

/// Default block size (RFC 1350).
pub(crate) const DEFAULT_BLKSIZE: u16 = 512;
/// Smallest and largest `blksize` a client may ask for (RFC 2348).
const BLKSIZE_RANGE: std::ops::RangeInclusive<u64> = 8..=65464;
/// Largest window granted whatever the limits say: keeps the 16-bit ACK numbers of a window
/// (at most this many blocks ahead of the last ACK) apart from those of stale ACKs behind it.
pub(crate) const MAX_WINDOW: u16 = 32768;

/// One valid option from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// `blksize`, within 8–65464.
    Blksize(u16),
    /// `timeout` in seconds, within 1–255.
    Timeout(u8),
    /// `tsize` (the value a client sends in a read request, normally 0, is not used).
    Tsize,
    /// `windowsize`, within 1–65535.
    Windowsize(u16),
}

impl Asked {
    /// Same option (whatever the value).
    fn same_kind(self, other: Self) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// Parse a decimal option value: ASCII digits only, at most 10 of them.
fn number(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The valid, known options of a request, first occurrence of each, in request order.
pub(crate) fn read(options: &[(String, String)]) -> Vec<Asked> {
    let mut out: Vec<Asked> = Vec::new();
    for (name, value) in options {
        let n = number(value);
        let asked = match name.as_str() {
            "blksize" => n
                .filter(|n| BLKSIZE_RANGE.contains(n))
                .and_then(|n| u16::try_from(n).ok())
                .map(Asked::Blksize),
            "timeout" => n
                .filter(|&n| n >= 1)
                .and_then(|n| u8::try_from(n).ok())
                .map(Asked::Timeout),
            "tsize" => n.map(|_| Asked::Tsize),
            "windowsize" => n
                .filter(|&n| n >= 1)
                .and_then(|n| u16::try_from(n).ok())
                .map(Asked::Windowsize),
            _ => None,
        };
        if let Some(a) = asked {
            if !out.iter().any(|o| o.same_kind(a)) {
                out.push(a);
            }
        }
    }
    out
}

/// What a transfer runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Granted {
    /// Block size.
    pub(crate) blksize: u16,
    /// Window size.
    pub(crate) windowsize: u16,
    /// Retransmission timeout.
    pub(crate) timeout: Duration,
    /// Whether `tsize` was asked for (and answered).
    pub(crate) tsize: bool,
    /// The OACK's (name, value) pairs; empty when no option was granted (no OACK is sent).
    pub(crate) oack: Vec<(String, String)>,
}

/// Grant `asked` for a file of `size` bytes under `limits`.
pub(crate) fn grant(asked: &[Asked], limits: &TftpLimits, size: u64) -> Granted {
    let mut g = Granted {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.default_timeout,
        tsize: false,
        oack: Vec::new(),
    };
    for &a in asked {
        let (name, value) = match a {
            Asked::Blksize(n) => {
                g.blksize = n.min(limits.max_blksize).max(8);
                ("blksize", g.blksize.to_string())
            }
            Asked::Timeout(s) => {
                g.timeout = Duration::from_secs(u64::from(s));
                ("timeout", s.to_string())
            }
            Asked::Tsize => {
                g.tsize = true;
                ("tsize", size.to_string())
            }
            Asked::Windowsize(n) => {
                g.windowsize = n.min(limits.max_windowsize).clamp(1, MAX_WINDOW);
                ("windowsize", g.windowsize.to_string())
            }
        };
        g.oack.push((name.to_owned(), value));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn limits() -> TftpLimits {
        TftpLimits {
            max_blksize: 1468,
            max_windowsize: 64,
            max_transfers: 4,
            max_queue: 4,
            default_timeout: Duration::from_secs(1),
            max_retries: 3,
            max_path_len: 255,
        }
    }

    #[test]
    fn valid_options_are_read_in_order_first_wins() {
        let a = read(&opts(&[
            ("tsize", "0"),
            ("blksize", "1428"),
            ("blksize", "512"),
            ("multicast", ""),
            ("windowsize", "8"),
            ("timeout", "3"),
        ]));
        assert_eq!(
            a,
            [
                Asked::Tsize,
                Asked::Blksize(1428),
                Asked::Windowsize(8),
                Asked::Timeout(3)
            ]
        );
    }

    #[test]
    fn invalid_values_are_ignored() {
        for (n, v) in [
            ("blksize", "7"),
            ("blksize", "65465"),
            ("blksize", "-1"),
            ("blksize", " 512"),
            ("blksize", "0x200"),
            ("blksize", "99999999999"),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", ""),
            ("tsize", "abc"),
        ] {
            assert_eq!(read(&opts(&[(n, v)])), [], "{n}={v}");
        }
        assert_eq!(
            read(&opts(&[
                ("blksize", "8"),
                ("windowsize", "65535"),
                ("timeout", "255")
            ]))
            .len(),
            3
        );
    }

    #[test]
    fn grants_are_capped_by_limits() {
        let g = grant(
            &[Asked::Blksize(65464), Asked::Windowsize(1000), Asked::Tsize],
            &limits(),
            1234,
        );
        assert_eq!((g.blksize, g.windowsize, g.tsize), (1468, 64, true));
        assert_eq!(
            g.oack,
            opts(&[("blksize", "1468"), ("windowsize", "64"), ("tsize", "1234")])
        );
        let g = grant(&[Asked::Blksize(8), Asked::Timeout(7)], &limits(), 0);
        assert_eq!((g.blksize, g.timeout), (8, Duration::from_secs(7)));
        let g = grant(&[], &limits(), 99);
        assert_eq!(
            (g.blksize, g.windowsize, g.timeout, g.oack.len()),
            (512, 1, Duration::from_secs(1), 0)
        );
        let big = TftpLimits {
            max_windowsize: 65535,
            ..limits()
        };
        assert_eq!(
            grant(&[Asked::Windowsize(65535)], &big, 0).windowsize,
            MAX_WINDOW
        );
    }
}
