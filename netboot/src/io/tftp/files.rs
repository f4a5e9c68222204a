//! Boot files in memory: each file (per served mode) is read once into a [`Bytes`] shared by
//! every transfer, so 500 clients fetching one 30 MiB kernel cost one 30 MiB buffer; a DATA
//! packet is a 4-byte header plus a slice of that buffer, never a per-client copy.
//!
//! A file is known by its [`FileIdentity`] (device, inode, size, mtime, ctime) taken from the
//! descriptor at open. When the identity differs at the next open (the file was replaced or
//! rewritten), the cached copy is dropped and the file is read again for new transfers; running
//! transfers keep the [`Bytes`] they were given. The cache holds at most its capacity in bytes
//! and evicts the least recently used files first (a transfer still holding an evicted file
//! keeps it alive until it ends).
//!
//! A rewrite that keeps the inode, the size and both timestamps (possible only within the
//! filesystem's timestamp granularity) is not noticed; replacing a file (`cp` to a temporary
//! name, then `mv`) always is.

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::tftp::{Mode, netascii, wire};

/// Default capacity of the cache: 2 GiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 2 << 30;

/// What distinguishes one version of a file from the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileIdentity {
    /// The identity of the file `meta` describes (from `fstat` on the open descriptor).
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Size in bytes when the identity was taken.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// A cached file: the served path (relative to the root) and its mode.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CacheKey {
    /// Normalised path relative to the root.
    pub path: String,
    /// Octet files are the bytes on disk; netascii files the converted copy.
    pub netascii: bool,
}

impl CacheKey {
    /// The key of `path` served in `mode`.
    pub(crate) fn new(path: &str, mode: Mode) -> Self {
        Self {
            path: path.to_owned(),
            netascii: mode == Mode::Netascii,
        }
    }
}

#[derive(Debug)]
struct Entry {
    identity: FileIdentity,
    bytes: Bytes,
    /// Position in `FileCache::recency`.
    used_at: u64,
}

/// Files in memory, bounded in bytes, least recently used evicted first.
#[derive(Debug)]
pub(crate) struct FileCache {
    capacity: u64,
    held: u64,
    clock: u64,
    entries: BTreeMap<CacheKey, Entry>,
    /// `used_at` → key, oldest first.
    recency: BTreeMap<u64, CacheKey>,
}

impl FileCache {
    /// An empty cache holding at most `capacity` bytes.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            held: 0,
            clock: 0,
            entries: BTreeMap::new(),
            recency: BTreeMap::new(),
        }
    }

    /// The cached bytes of `key` if they are of version `identity`. A cached copy of another
    /// version is dropped (the file changed on disk).
    pub(crate) fn lookup(&mut self, key: &CacheKey, identity: FileIdentity) -> Option<Bytes> {
        let entry = self.entries.get(key)?;
        if entry.identity != identity {
            self.remove(key);
            return None;
        }
        self.clock += 1;
        let now = self.clock;
        let entry = self.entries.get_mut(key)?;
        self.recency.remove(&entry.used_at);
        entry.used_at = now;
        self.recency.insert(now, key.clone());
        Some(entry.bytes.clone())
    }

    /// The raw (octet) bytes of `path` at version `identity`, if cached: the source of a
    /// netascii conversion without reading the file again.
    pub(crate) fn octet_source(&self, path: &str, identity: FileIdentity) -> Option<Bytes> {
        let key = CacheKey {
            path: path.to_owned(),
            netascii: false,
        };
        self.entries
            .get(&key)
            .filter(|e| e.identity == identity)
            .map(|e| e.bytes.clone())
    }

    /// Keep `bytes` as version `identity` of `key`, evicting the least recently used files
    /// until the cache fits. A file larger than the whole capacity is not kept.
    pub(crate) fn insert(&mut self, key: CacheKey, identity: FileIdentity, bytes: Bytes) {
        self.remove(&key);
        let size = bytes.len() as u64;
        if size > self.capacity {
            return;
        }
        while self.held + size > self.capacity {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.held -= entry.bytes.len() as u64;
            }
        }
        self.clock += 1;
        self.recency.insert(self.clock, key.clone());
        self.held += size;
        self.entries.insert(
            key,
            Entry {
                identity,
                bytes,
                used_at: self.clock,
            },
        );
    }

    /// Bytes held by the cache (files still used by transfers after eviction not included).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Files cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.held -= entry.bytes.len() as u64;
            self.recency.remove(&entry.used_at);
        }
    }
}

/// Read the open `file` whole (blocking) and convert it for `mode`; `octet` is the file's
/// cached raw bytes when available (only netascii uses it). Returns the bytes and whether the
/// file kept its identity while being read (only then may the result be cached).
///
/// # Errors
/// A read error, or a file that shrank or grew past the size `identity` recorded.
pub(crate) fn load(
    mut file: File,
    identity: FileIdentity,
    mode: Mode,
    octet: Option<Bytes>,
) -> io::Result<(Bytes, bool)> {
    let (raw, stable) = match octet {
        Some(raw) => (raw, true),
        None => {
            let expected = usize::try_from(identity.size()).map_err(|_| {
                io::Error::new(io::ErrorKind::OutOfMemory, "file larger than memory")
            })?;
            let mut data = Vec::new();
            data.try_reserve_exact(expected)
                .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
            // One byte past the expected size tells a file that grew from one that did not.
            (&mut file)
                .take(identity.size().saturating_add(1))
                .read_to_end(&mut data)?;
            let after = file.metadata().map(|m| FileIdentity::of(&m)).ok();
            let stable = data.len() == expected && after == Some(identity);
            (Bytes::from(data), stable)
        }
    };
    let served = match mode {
        Mode::Octet => raw,
        Mode::Netascii => Bytes::from(netascii::encode(&raw)),
    };
    Ok((served, stable))
}

/// The 4-byte DATA header of `block` as a [`Bytes`] that costs nothing to make: a slice of one
/// static table holding the headers of all 65536 blocks (256 KiB, built on first use).
pub(crate) fn data_header(block: u16) -> Bytes {
    Bytes::from_static(data_header_slice(block))
}

/// The 4-byte DATA header of `block`, from the static table of [`data_header`].
pub(crate) fn data_header_slice(block: u16) -> &'static [u8] {
    static TABLE: OnceLock<&'static [u8]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let table: Vec<u8> = (0..=u16::MAX).flat_map(wire::emit_data_header).collect();
        Box::leak(table.into_boxed_slice())
    });
    let at = usize::from(block) * 4;
    &table[at..at + 4]
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("netbootd-tftp-files-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Open like the driver does (the confinement itself is tested in `io::root`) and go
    /// through the cache: hit, or load and insert.
    fn open(cache: &mut FileCache, root: &Path, path: &str, mode: Mode) -> Bytes {
        let (file, meta) = crate::io::root::open_confined(root, path).unwrap();
        let identity = FileIdentity::of(&meta);
        let key = CacheKey::new(path, mode);
        if let Some(bytes) = cache.lookup(&key, identity) {
            return bytes;
        }
        let octet = cache.octet_source(path, identity);
        let (bytes, stable) = load(file, identity, mode, octet).unwrap();
        assert!(stable);
        cache.insert(key, identity, bytes.clone());
        bytes
    }

    #[test]
    fn two_opens_of_an_unchanged_file_share_one_allocation() {
        let dir = TempDir::new("share");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.0.join("kernel"), &content).unwrap();
        let mut cache = FileCache::new(DEFAULT_CACHE_CAPACITY);
        let a = open(&mut cache, &dir.0, "kernel", Mode::Octet);
        let b = open(&mut cache, &dir.0, "kernel", Mode::Octet);
        assert_eq!(&a[..], &content[..]);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second open reuses the first buffer"
        );
        assert_eq!(cache.held_bytes(), content.len() as u64);
        assert_eq!(cache.len(), 1);
        // A slice for a DATA packet points into the same buffer.
        let slice = b.slice(1468..2936);
        assert_eq!(slice.as_ptr(), a[1468..].as_ptr());
    }

    #[test]
    fn a_changed_file_is_reloaded_and_running_transfers_keep_theirs() {
        let dir = TempDir::new("reload");
        let path = dir.0.join("boot.ipxe");
        std::fs::write(&path, b"#!ipxe\nchain old\n").unwrap();
        let mut cache = FileCache::new(DEFAULT_CACHE_CAPACITY);
        let old = open(&mut cache, &dir.0, "boot.ipxe", Mode::Octet);

        // Rewritten in place, same size: only the timestamps tell.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        io::Write::write_all(&mut &file, b"#!ipxe\nchain new\n").unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        drop(file);
        let new = open(&mut cache, &dir.0, "boot.ipxe", Mode::Octet);
        assert_eq!(&new[..], b"#!ipxe\nchain new\n");
        assert_eq!(
            &old[..],
            b"#!ipxe\nchain old\n",
            "the running transfer's copy"
        );
        assert_ne!(old.as_ptr(), new.as_ptr());

        // Replaced by rename (new inode, different size).
        let tmp = dir.0.join("boot.ipxe.tmp");
        std::fs::write(&tmp, b"#!ipxe\nchain newest please\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let newest = open(&mut cache, &dir.0, "boot.ipxe", Mode::Octet);
        assert_eq!(&newest[..], b"#!ipxe\nchain newest please\n");
        assert_eq!(cache.len(), 1, "the stale copies are gone");
        assert_eq!(cache.held_bytes(), newest.len() as u64);
    }

    #[test]
    fn netascii_is_converted_once_and_cached_apart_from_octet() {
        let dir = TempDir::new("netascii");
        std::fs::write(dir.0.join("menu.txt"), b"a\nb\rc\r\n").unwrap();
        let mut cache = FileCache::new(DEFAULT_CACHE_CAPACITY);
        let octet = open(&mut cache, &dir.0, "menu.txt", Mode::Octet);
        let ascii = open(&mut cache, &dir.0, "menu.txt", Mode::Netascii);
        assert_eq!(&octet[..], b"a\nb\rc\r\n");
        assert_eq!(&ascii[..], b"a\r\nb\r\0c\r\0\r\n");
        let again = open(&mut cache, &dir.0, "menu.txt", Mode::Netascii);
        assert_eq!(again.as_ptr(), ascii.as_ptr());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.held_bytes(), (octet.len() + ascii.len()) as u64);
        // Netascii without a cached octet copy reads the file itself.
        let mut fresh = FileCache::new(DEFAULT_CACHE_CAPACITY);
        let ascii2 = open(&mut fresh, &dir.0, "menu.txt", Mode::Netascii);
        assert_eq!(&ascii2[..], &ascii[..]);
        assert_eq!(fresh.len(), 1);
    }

    #[test]
    fn least_recently_used_files_are_evicted_to_fit() {
        let dir = TempDir::new("lru");
        for name in ["a", "b", "c", "big"] {
            let len = if name == "big" { 5000 } else { 400 };
            std::fs::write(dir.0.join(name), vec![b'x'; len]).unwrap();
        }
        let mut cache = FileCache::new(1000);
        let a = open(&mut cache, &dir.0, "a", Mode::Octet);
        let _b = open(&mut cache, &dir.0, "b", Mode::Octet);
        // Touch `a`, so `b` is the oldest when `c` needs room.
        let a2 = open(&mut cache, &dir.0, "a", Mode::Octet);
        assert_eq!(a.as_ptr(), a2.as_ptr());
        let _c = open(&mut cache, &dir.0, "c", Mode::Octet);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.held_bytes(), 800);
        let a3 = open(&mut cache, &dir.0, "a", Mode::Octet);
        assert_eq!(a.as_ptr(), a3.as_ptr(), "a stayed");
        let b2 = open(&mut cache, &dir.0, "b", Mode::Octet);
        assert_eq!(&b2[..], &[b'x'; 400][..], "b was evicted and read again");
        assert!(cache.held_bytes() <= 1000);
        // Larger than the whole cache: served, not kept.
        let big = open(&mut cache, &dir.0, "big", Mode::Octet);
        assert_eq!(big.len(), 5000);
        assert!(cache.held_bytes() <= 1000);
        let big2 = open(&mut cache, &dir.0, "big", Mode::Octet);
        assert_ne!(big.as_ptr(), big2.as_ptr());
    }

    #[test]
    fn a_file_that_grows_while_read_is_not_cached() {
        let dir = TempDir::new("grow");
        let path = dir.0.join("f");
        std::fs::write(&path, b"12345").unwrap();
        let file = File::open(&path).unwrap();
        let identity = FileIdentity::of(&file.metadata().unwrap());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, b"678"))
            .unwrap();
        let (_, stable) = load(file, identity, Mode::Octet, None).unwrap();
        assert!(!stable);
    }

    #[test]
    fn data_headers_come_from_one_static_table() {
        for block in [0u16, 1, 255, 256, 65535] {
            assert_eq!(&data_header(block)[..], &wire::emit_data_header(block)[..]);
        }
        assert_eq!(
            data_header(7).as_ptr(),
            data_header(7).as_ptr(),
            "no allocation per header"
        );
    }
}
