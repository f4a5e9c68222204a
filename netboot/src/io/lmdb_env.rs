//! Opening an LMDB environment: the one `unsafe` call the lease store needs.
//!
//! heed marks [`heed::EnvOpenOptions::open`] (and setting environment flags) `unsafe` because an
//! LMDB environment is a memory map whose soundness rests on rules the compiler cannot check.
//! [`open_env`] upholds them for [`crate::store::lmdb::LmdbStore`], the only caller, and exposes
//! a safe function.
#![allow(unsafe_code)]

use std::path::Path;

use heed::{Env, EnvFlags, EnvOpenOptions, WithoutTls};

/// How to open the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvMode {
    /// Read and write, with this map size in bytes (a multiple of the page size).
    ReadWrite {
        /// Maximum size of the data file.
        map_size: usize,
    },
    /// Read only (`MDB_RDONLY`); the map size is taken from the existing file.
    ReadOnly,
}

/// Open (creating the files if `mode` allows) the LMDB environment in directory `dir`, with room
/// for `max_dbs` named databases. Read transactions do not use thread-local storage, so the
/// store may move between threads.
///
/// LMDB's default durability is kept: no `NO_SYNC`, `NO_META_SYNC` or `MAP_ASYNC`, so a committed
/// write transaction is on disk when `commit` returns.
///
/// # Errors
/// Whatever LMDB or heed report, including [`heed::Error::EnvAlreadyOpened`] when this process
/// already has `dir` open.
pub(crate) fn open_env(dir: &Path, mode: EnvMode, max_dbs: u32) -> heed::Result<Env<WithoutTls>> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.max_dbs(max_dbs);
    match mode {
        EnvMode::ReadWrite { map_size } => {
            options.map_size(map_size);
        }
        EnvMode::ReadOnly => {
            // SAFETY: `READ_ONLY` (`MDB_RDONLY`) only forbids writes through this handle; it is
            // not one of the flags that weaken durability or locking (`NO_SYNC`, `NO_META_SYNC`,
            // `NO_LOCK`), which are what make `flags` unsafe.
            unsafe {
                options.flags(EnvFlags::READ_ONLY);
            }
        }
    }
    // SAFETY: LMDB's rules for a memory-mapped environment are upheld:
    // - The same environment must not be opened twice in one process (closing the second handle
    //   would drop the first one's POSIX locks). heed keeps a registry of open paths and returns
    //   `EnvAlreadyOpened` instead, and `LmdbStore` is the only code that opens environments.
    // - The files must not be modified by anything but LMDB while mapped: they live in the
    //   daemon's own data directory (created mode 0700), which nothing else writes.
    // - Other processes (`netbootd leases`) coordinate through LMDB's lock file, which we keep
    //   (no `NO_LOCK`); no flag that weakens durability is set.
    unsafe { options.open(dir) }
}
