//! Request file names: normalised to a relative path, or refused before any file access.
//!
//! Normalisation is purely textual. It makes the name relative (leading `/` stripped), accepts
//! Windows separators (`\` becomes `/`; PXE ROMs configured for Windows servers send them), and
//! drops empty and `.` components. It refuses what can never name a file under the root: a `..`
//! component anywhere, NUL and other control characters, names that are not UTF-8, empty
//! names, and names longer than the limit. The driver still confines the result to its root
//! (symlinks out, devices); this is the first of two fences.

/// Why a requested file name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing left after normalisation (`""`, `/`, `./`).
    #[error("empty file name")]
    Empty,
    /// Longer than the configured limit.
    #[error("file name too long")]
    TooLong,
    /// Contains a `..` component.
    #[error("file name contains a '..' component")]
    ParentDir,
    /// Contains a NUL or another control character.
    #[error("file name contains a control character")]
    ControlChar,
    /// Not valid UTF-8.
    #[error("file name is not UTF-8")]
    NotUtf8,
}

impl PathError {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::ParentDir => "parent_dir",
            Self::ControlChar => "control_char",
            Self::NotUtf8 => "not_utf8",
        }
    }
}

/// Normalise a requested file name (`raw`, at most `max_len` bytes) into a relative path with
/// `/` separators and no empty, `.` or `..` components.
pub fn normalize(raw: &[u8], max_len: usize) -> Result<String, PathError> {
    if raw.len() > max_len {
        return Err(PathError::TooLong);
    }
    if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ControlChar);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
    let mut out = String::with_capacity(text.len());
    for component in text.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir),
            name => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(name);
            }
        }
    }
    if out.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn n(s: &[u8]) -> Result<String, PathError> {
        normalize(s, 255)
    }

    #[test]
    fn plain_and_nested_names_pass_through() {
        assert_eq!(n(b"pxelinux.0").unwrap(), "pxelinux.0");
        assert_eq!(
            n(b"pxelinux.cfg/01-52-54-00-00-00-01").unwrap(),
            "pxelinux.cfg/01-52-54-00-00-00-01"
        );
        assert_eq!(n(b"...").unwrap(), "...");
        assert_eq!(n(b"a..b/..c").unwrap(), "a..b/..c");
    }

    #[test]
    fn leading_slash_backslashes_and_dots_are_normalised() {
        assert_eq!(n(b"/leading/slash").unwrap(), "leading/slash");
        assert_eq!(n(b"\\windows\\style").unwrap(), "windows/style");
        assert_eq!(n(b"a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(n(b"./x").unwrap(), "x");
        assert_eq!(n(b"//x").unwrap(), "x");
    }

    #[test]
    fn parent_components_are_refused_anywhere() {
        for bad in [
            &b"../etc/passwd"[..],
            b"/../x",
            b"a/../../x",
            b"a/..",
            b"..",
            b"..\\x",
            b"a\\..\\b",
        ] {
            assert_eq!(
                n(bad),
                Err(PathError::ParentDir),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn control_characters_utf8_empty_and_length() {
        assert_eq!(n(b"a\0b"), Err(PathError::ControlChar));
        assert_eq!(n(b"a\nb"), Err(PathError::ControlChar));
        assert_eq!(n(b"a\x7fb"), Err(PathError::ControlChar));
        assert_eq!(n(b"\xff\xfe"), Err(PathError::NotUtf8));
        assert_eq!(n("é/ü".as_bytes()).unwrap(), "é/ü");
        for empty in [&b""[..], b"/", b"./", b"//./"] {
            assert_eq!(n(empty), Err(PathError::Empty));
        }
        assert_eq!(n(&[b'a'; 300]), Err(PathError::TooLong));
        assert_eq!(n(&[b'a'; 255]).unwrap().len(), 255);
        assert_eq!(normalize(b"abcd", 3), Err(PathError::TooLong));
    }

    proptest! {
        /// Whatever the input, an accepted name is relative, has no empty/`.`/`..` components,
        /// no backslash or control character, fits the limit, and normalising it again is a
        /// no-op.
        #[test]
        fn accepted_names_are_clean(raw in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'\\'), Just(b'.'), Just(b'a'), Just(0u8), any::<u8>()], 0..40)) {
            if let Ok(p) = normalize(&raw, 32) {
                prop_assert!(!p.is_empty() && p.len() <= 32);
                prop_assert!(!p.starts_with('/') && !p.contains('\\'));
                prop_assert!(p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(!p.bytes().any(|b| b < 0x20 || b == 0x7f));
                prop_assert_eq!(normalize(p.as_bytes(), 32), Ok(p.clone()));
            }
        }
    }
}
