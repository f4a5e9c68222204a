//! Opening a file confined beneath a served root directory (TFTP and HTTP boot files).
//!
//! [`open_confined`] is the only way the daemon reads a requested boot file. It never reads a
//! byte outside the root, whatever the request or the tree under the root contains:
//!
//! - The relative name is checked again here (absolute names and `..` components are refused
//!   even though callers normalise first).
//! - Resolution uses `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` relative to a
//!   descriptor of the root: symbolic links that stay inside the root are followed, absolute
//!   symlinks and symlinks (or `..` inside them) leading out are refused by the kernel (`EXDEV`),
//!   as are `/proc` magic links.
//! - The file is opened `O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK` (a FIFO cannot block the
//!   caller) and `fstat`ed: only regular files are served; directories, devices, FIFOs and
//!   sockets are refused.
//!
//! Kernels before 5.6 lack `openat2` (`ENOSYS`), and some container seccomp profiles refuse it
//! (`EPERM`). A one-time probe detects this and switches to a userspace walk: open the root,
//! then each directory component with `openat(O_NOFOLLOW | O_DIRECTORY)` and the last one with
//! `O_NOFOLLOW`. The walk cannot follow symlinks safely, so it refuses every symlink, including
//! ones inside the root; a debug log line says which resolver is in use.
//!
//! No `unsafe` is needed: `nix` wraps both system calls.

use std::fs::{File, Metadata};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fstatat};

use crate::tftp::FileError;

/// How many times `openat2` is retried when the kernel reports a concurrent rename (`EAGAIN`).
const EAGAIN_RETRIES: usize = 8;

/// How a confined path is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// `openat2` with `RESOLVE_BENEATH`: symlinks inside the root are followed.
    Openat2,
    /// Component-by-component `openat` with `O_NOFOLLOW`: every symlink is refused.
    Walk,
}

/// Open `rel` (a relative, normalised path such as `efi/grubx64.efi`) beneath `root`, read-only,
/// and return the file with its metadata. See the module docs for what is refused.
///
/// The returned file has `O_NONBLOCK` set, which has no effect on reads of regular files.
///
/// # Errors
/// - [`FileError::NotFound`]: no such file (or a path component is not a directory).
/// - [`FileError::AccessViolation`]: `rel` is absolute or has a `..` component, resolution would
///   leave the root (symlink out, absolute symlink, magic link), the file is not a regular file,
///   or permission was denied.
/// - [`FileError::Io`]: any other failure, including a missing or unreadable root.
pub fn open_confined(root: &Path, rel: &str) -> Result<(File, Metadata), FileError> {
    open_confined_with(resolver(), root, rel)
}

/// [`open_confined`] with an explicit resolver (tests exercise both).
pub(crate) fn open_confined_with(
    resolver: Resolver,
    root: &Path,
    rel: &str,
) -> Result<(File, Metadata), FileError> {
    let components = components(rel)?;
    let root_fd = open_root(root)?;
    let fd = match resolver {
        Resolver::Openat2 => open_beneath(&root_fd, rel)?,
        Resolver::Walk => open_walk(root_fd, &components)?,
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|_| FileError::Io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::AccessViolation);
    }
    Ok((file, meta))
}

/// The components of `rel`, with empty and `.` components dropped; refuses absolute paths,
/// `..` and NUL, and an empty result (the root itself is a directory).
fn components(rel: &str) -> Result<Vec<&str>, FileError> {
    if rel.starts_with('/') || rel.contains('\0') {
        return Err(FileError::AccessViolation);
    }
    let mut out = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(FileError::AccessViolation),
            _ => out.push(part),
        }
    }
    if out.is_empty() {
        return Err(FileError::AccessViolation);
    }
    Ok(out)
}

/// The resolver this process uses, probed once: `openat2` unless the kernel or a seccomp filter
/// refuses it.
fn resolver() -> Resolver {
    static RESOLVER: OnceLock<Resolver> = OnceLock::new();
    *RESOLVER.get_or_init(|| {
        // Probe on `/`, which always exists, so a missing root cannot skew the result.
        let probe = open_root(Path::new("/"))
            .map_err(|_| Errno::ENOENT)
            .and_then(|fd| {
                openat2(
                    fd.as_fd(),
                    ".",
                    OpenHow::new()
                        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS),
                )
            });
        match probe {
            Err(Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::E2BIG) => {
                tracing::info!(
                    "openat2(2) is not available (kernel before 5.6, or refused by seccomp): \
                     boot files are opened component by component and symlinks under the root \
                     are not followed"
                );
                Resolver::Walk
            }
            // Available (or `/` unopenable, which no working system has).
            _ => {
                tracing::debug!("boot files are opened with openat2(RESOLVE_BENEATH)");
                Resolver::Openat2
            }
        }
    })
}

/// A descriptor of the root directory (the root itself may be reached through symlinks: it is
/// the operator's configuration, not a request).
fn open_root(root: &Path) -> Result<OwnedFd, FileError> {
    open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| FileError::Io)
}

fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
}

fn open_beneath(root: &OwnedFd, rel: &str) -> Result<OwnedFd, FileError> {
    let how = OpenHow::new()
        .flags(read_flags())
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut attempts = 0;
    loop {
        match openat2(root.as_fd(), rel, how) {
            Ok(fd) => return Ok(fd),
            // The kernel could not rule out an escape through a concurrent rename: retry.
            Err(Errno::EAGAIN) if attempts < EAGAIN_RETRIES => attempts += 1,
            Err(errno) => return Err(map_errno(errno)),
        }
    }
}

fn open_walk(root: OwnedFd, components: &[&str]) -> Result<OwnedFd, FileError> {
    let Some((last, dirs)) = components.split_last() else {
        return Err(FileError::AccessViolation);
    };
    let mut dir = root;
    for name in dirs {
        // O_PATH: only search permission is needed, as in the kernel's own walk.
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        dir = match openat(dir.as_fd(), *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            // With O_NOFOLLOW a symlink is not followed, so O_DIRECTORY refuses it: ENOTDIR.
            Err(Errno::ENOTDIR) => return Err(classify_not_dir(&dir, name)),
            Err(errno) => return Err(map_errno(errno)),
        };
    }
    openat(
        dir.as_fd(),
        *last,
        read_flags() | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .map_err(map_errno)
}

/// A component that is not a directory: a symlink (refused) or anything else (not found).
fn classify_not_dir(dir: &OwnedFd, name: &str) -> FileError {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            FileError::AccessViolation
        }
        _ => FileError::NotFound,
    }
}

fn map_errno(errno: Errno) -> FileError {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG => FileError::NotFound,
        // EXDEV: resolution would leave the root; ELOOP: symlink refused (or a loop); ENXIO: a
        // socket; EACCES/EPERM: permission.
        Errno::EACCES | Errno::EPERM | Errno::EXDEV | Errno::ELOOP | Errno::ENXIO => {
            FileError::AccessViolation
        }
        _ => FileError::Io,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use super::*;

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("netbootd-root-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("temp dir");
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

    /// A root with `a/b.bin`, a sibling secret outside it, and assorted hostile entries.
    fn fixture(name: &str) -> TempDir {
        let dir = TempDir::new(name);
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/sub")).expect("mkdir");
        std::fs::write(root.join("a/b.bin"), b"boot bytes").expect("write");
        std::fs::write(dir.path().join("secret"), b"do not serve").expect("write");
        symlink("b.bin", root.join("a/link")).expect("symlink");
        symlink("a", root.join("dirlink")).expect("symlink");
        symlink("../../secret", root.join("a/out")).expect("symlink");
        symlink("/etc/passwd", root.join("passwd")).expect("symlink");
        symlink(dir.path().join("secret"), root.join("abs")).expect("symlink");
        symlink("/dev/null", root.join("null")).expect("symlink");
        symlink("/proc/self/root/etc/passwd", root.join("magic")).expect("symlink");
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
        dir
    }

    fn read(file: (File, Metadata)) -> Vec<u8> {
        let (mut f, meta) = file;
        let mut out = Vec::new();
        f.read_to_end(&mut out).expect("read");
        assert_eq!(meta.len(), out.len() as u64);
        out
    }

    #[test]
    fn regular_file_opens_with_both_resolvers() {
        let dir = fixture("regular");
        let root = dir.path().join("root");
        for r in BOTH {
            for rel in ["a/b.bin", "./a//b.bin", "a/./b.bin"] {
                let got = open_confined_with(r, &root, rel).expect(rel);
                assert_eq!(read(got), b"boot bytes", "{r:?} {rel}");
            }
        }
        // The public entry point picks a working resolver on this kernel.
        assert_eq!(
            read(open_confined(&root, "a/b.bin").expect("open")),
            b"boot bytes"
        );
    }

    #[test]
    fn parent_and_absolute_names_are_refused_before_resolution() {
        let dir = fixture("dotdot");
        let root = dir.path().join("root");
        for r in BOTH {
            for rel in [
                "../secret",
                "a/../../secret",
                "a/..",
                "/etc/passwd",
                "",
                ".",
                "a/\0b",
            ] {
                assert_eq!(
                    open_confined_with(r, &root, rel).err(),
                    Some(FileError::AccessViolation),
                    "{r:?} {rel:?}"
                );
            }
        }
    }

    #[test]
    fn symlinks_inside_the_root_follow_only_with_openat2() {
        let dir = fixture("inside");
        let root = dir.path().join("root");
        for rel in ["a/link", "dirlink/b.bin"] {
            let got = open_confined_with(Resolver::Openat2, &root, rel).expect(rel);
            assert_eq!(read(got), b"boot bytes");
            assert_eq!(
                open_confined_with(Resolver::Walk, &root, rel).err(),
                Some(FileError::AccessViolation),
                "walk refuses {rel}"
            );
        }
    }

    #[test]
    fn symlinks_leading_out_are_refused() {
        let dir = fixture("out");
        let root = dir.path().join("root");
        for r in BOTH {
            for rel in ["a/out", "passwd", "abs", "null", "magic"] {
                assert_eq!(
                    open_confined_with(r, &root, rel).err(),
                    Some(FileError::AccessViolation),
                    "{r:?} {rel}"
                );
            }
        }
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = fixture("fifo");
        let root = dir.path().join("root");
        let (tx, rx) = std::sync::mpsc::channel();
        let root2 = root.clone();
        std::thread::spawn(move || {
            let results: Vec<_> = BOTH
                .iter()
                .map(|&r| open_confined_with(r, &root2, "fifo").err())
                .collect();
            let _ = tx.send(results);
        });
        let results = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO must not block");
        assert_eq!(results, vec![Some(FileError::AccessViolation); 2]);
    }

    #[test]
    fn directories_and_missing_files() {
        let dir = fixture("dirs");
        let root = dir.path().join("root");
        for r in BOTH {
            assert_eq!(
                open_confined_with(r, &root, "a/sub").err(),
                Some(FileError::AccessViolation),
                "{r:?} directory"
            );
            for rel in ["missing", "a/missing", "nodir/x", "a/b.bin/x"] {
                assert_eq!(
                    open_confined_with(r, &root, rel).err(),
                    Some(FileError::NotFound),
                    "{r:?} {rel}"
                );
            }
        }
        assert_eq!(
            open_confined(&dir.path().join("no-root"), "a/b.bin").err(),
            Some(FileError::Io)
        );
    }
}
