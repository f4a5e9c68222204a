//! Netascii (RFC 764, RFC 1350) conversion.
//!
//! A netascii file ends its lines with CR LF and carries a bare CR as CR NUL. The driver
//! converts a file once when it is opened in netascii mode and serves (and reports the size of)
//! the converted bytes, so the core treats both modes alike.

/// Convert `data` to netascii: LF → CR LF, CR → CR NUL, every other byte as is.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(data).try_into().unwrap_or(data.len()));
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            other => out.push(other),
        }
    }
    out
}

/// Length of `encode(data)` without building it.
pub fn encoded_len(data: &[u8]) -> u64 {
    let extra = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    (data.len() as u64).saturating_add(extra as u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn line_ends_and_bare_cr() {
        assert_eq!(encode(b"a\nb"), b"a\r\nb");
        assert_eq!(encode(b"a\rb"), b"a\r\0b");
        assert_eq!(encode(b"a\r\nb"), b"a\r\0\r\nb");
        assert_eq!(encode(b"\n\n"), b"\r\n\r\n");
        assert_eq!(encode(b""), b"");
        assert_eq!(encode(b"plain"), b"plain");
    }

    /// Undo the encoding (test oracle).
    fn decode(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            match (data[i], data.get(i + 1)) {
                (b'\r', Some(b'\n')) => {
                    out.push(b'\n');
                    i += 2;
                }
                (b'\r', Some(0)) => {
                    out.push(b'\r');
                    i += 2;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn round_trips_and_length_matches(data in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), any::<u8>()], 0..200)) {
            let e = encode(&data);
            prop_assert_eq!(e.len() as u64, encoded_len(&data));
            prop_assert_eq!(decode(&e), data);
            // Every CR is followed by LF or NUL.
            for (i, &b) in e.iter().enumerate() {
                if b == b'\r' {
                    prop_assert!(matches!(e.get(i + 1), Some(b'\n' | 0)));
                }
            }
        }
    }
}
