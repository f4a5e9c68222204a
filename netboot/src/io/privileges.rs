//! Dropping privileges once every socket is open.
//!
//! netbootd needs root (or `CAP_NET_RAW` + `CAP_NET_BIND_SERVICE`) only to open its sockets:
//! AF_PACKET sockets for DHCP and ports 67, 69 and the HTTP port. Once they are open,
//! [`drop_privileges`] runs on the thread that opened them (the main thread):
//!
//! - **Started as root with `user = "NAME"`**: keep capabilities across the uid change
//!   (`PR_SET_KEEPCAPS`), drop every capability but `CAP_NET_RAW` from the bounding set, set the
//!   supplementary groups to the user's primary group, then the gid and uid (glibc applies these
//!   to every thread of the process), then `capset` the permitted and effective sets to
//!   `CAP_NET_RAW` alone (kept so a raw socket could be reopened; sending on open ones needs
//!   nothing) and clear the inheritable and ambient sets. No listener is bound after start, so
//!   `CAP_NET_BIND_SERVICE` is not kept.
//! - **Started as a non-root user with capabilities** (systemd's `AmbientCapabilities=`):
//!   every capability but `CAP_NET_RAW` is dropped from the permitted, effective, inheritable
//!   and ambient sets (the bounding set too when `CAP_SETPCAP` allows).
//! - **Started as root without `user`**: nothing is dropped; a warning says how to.
//!
//! In every case `PR_SET_NO_NEW_PRIVS` is set last, so nothing this thread or its future
//! threads execute can gain privileges. Capabilities, the bounding set and no-new-privs are
//! per thread in Linux: threads started before the drop (the async runtime's workers) lose all
//! their capabilities with the uid change (they have no keep-caps flag), but keep a full
//! bounding set and no no-new-privs flag; netbootd never executes programs, so neither can be
//! used.
#![allow(unsafe_code)]

use std::io;

use nix::unistd::{Gid, Uid, User};

/// `CAP_NET_RAW`: open AF_PACKET sockets.
pub const CAP_NET_RAW: u32 = 13;
/// `CAP_NET_BIND_SERVICE`: bind ports below 1024.
pub const CAP_NET_BIND_SERVICE: u32 = 10;
/// `CAP_SETPCAP`: change the bounding set.
const CAP_SETPCAP: u32 = 8;
/// The capabilities kept after the drop.
pub const KEPT: [u32; 1] = [CAP_NET_RAW];

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Why privileges could not be dropped (netbootd then refuses to run).
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The configured user does not exist.
    #[error(
        "user `{0}` (the `user` key) does not exist on this host: create it (for example \
         `useradd --system --no-create-home {0}`) or name an existing unprivileged user"
    )]
    UnknownUser(String),
    /// The configured user is root.
    #[error("user `{0}` (the `user` key) has uid 0: name an unprivileged user, or remove the key")]
    RootUser(String),
    /// Looking the user up failed.
    #[error("looking up user `{user}`: {source}")]
    Lookup {
        /// The user.
        user: String,
        /// The error.
        source: nix::Error,
    },
    /// A system call failed.
    #[error("dropping privileges: {what} failed: {source}")]
    Syscall {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// What [`drop_privileges`] did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The user switched to: name, uid, gid (`None` when the uid did not change).
    pub user: Option<(String, u32, u32)>,
    /// Capabilities effective afterwards, by name.
    pub kept: Vec<&'static str>,
    /// Whether the bounding set was reduced.
    pub bounding_set_reduced: bool,
    /// Whether nothing could be dropped (root without `user`).
    pub still_root: bool,
}

fn syscall_error(what: &'static str) -> PrivilegeError {
    PrivilegeError::Syscall {
        what,
        source: io::Error::last_os_error(),
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's (effective, permitted, inheritable) sets as 64-bit masks.
fn capget() -> Result<(u64, u64, u64), PrivilegeError> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: `header` and `data` are valid, writable, `repr(C)` structures of the layout
    // capget(2) expects for version 3 (one header, two data words), alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(syscall_error("capget"));
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

/// Sets the calling thread's effective and permitted sets to `mask`, inheritable to nothing.
fn capset(mask: u64) -> Result<(), PrivilegeError> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let low = (mask & 0xffff_ffff) as u32;
    let high = (mask >> 32) as u32;
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: valid `repr(C)` header and two data words as capset(2) version 3 expects; the
    // kernel only reads `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(syscall_error("capset"));
    }
    Ok(())
}

/// `prctl(option, arg2, 0, 0, 0)`.
fn prctl(
    option: libc::c_int,
    arg2: libc::c_ulong,
    what: &'static str,
) -> Result<(), PrivilegeError> {
    // SAFETY: the prctl options used here (KEEPCAPS, CAPBSET_DROP, CAP_AMBIENT, NO_NEW_PRIVS)
    // take integer arguments only and touch no memory of ours.
    let rc = unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        return Err(syscall_error(what));
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The names of the capabilities in `mask` that this module knows.
#[must_use]
pub fn cap_names(mask: u64) -> Vec<&'static str> {
    [
        (CAP_NET_BIND_SERVICE, "cap_net_bind_service"),
        (CAP_NET_RAW, "cap_net_raw"),
    ]
    .iter()
    .filter(|(cap, _)| mask & (1 << cap) != 0)
    .map(|&(_, name)| name)
    .collect()
}

/// Drops the bounding set to [`KEPT`] (the calling thread's); `false` without `CAP_SETPCAP`.
fn reduce_bounding_set(effective: u64) -> Result<bool, PrivilegeError> {
    if effective & (1 << CAP_SETPCAP) == 0 {
        return Ok(false);
    }
    for cap in 0..=last_cap() {
        if !KEPT.contains(&cap) {
            prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(cap),
                "PR_CAPBSET_DROP",
            )?;
        }
    }
    Ok(true)
}

/// Drops privileges as the module documentation describes. Call on the thread that opened the
/// sockets, after the last one is open.
///
/// # Errors
/// The user does not exist or is root, or a system call failed (the caller must not go on).
pub fn drop_privileges(user: Option<&str>) -> Result<Dropped, PrivilegeError> {
    let kept_mask: u64 = KEPT.iter().map(|c| 1u64 << c).sum();
    let (effective, permitted, _) = capget()?;
    let switched = if Uid::effective().is_root() {
        let Some(name) = user else {
            return Ok(Dropped {
                user: None,
                kept: cap_names(effective),
                bounding_set_reduced: false,
                still_root: true,
            });
        };
        let found = User::from_name(name)
            .map_err(|source| PrivilegeError::Lookup {
                user: name.to_owned(),
                source,
            })?
            .ok_or_else(|| PrivilegeError::UnknownUser(name.to_owned()))?;
        if found.uid.is_root() {
            return Err(PrivilegeError::RootUser(name.to_owned()));
        }
        prctl(libc::PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS")?;
        let reduced = reduce_bounding_set(effective)?;
        set_ids(found.uid, found.gid)?;
        capset(kept_mask)?;
        prctl(libc::PR_SET_KEEPCAPS, 0, "PR_SET_KEEPCAPS")?;
        Some((
            (name.to_owned(), found.uid.as_raw(), found.gid.as_raw()),
            reduced,
        ))
    } else {
        None
    };
    let bounding_set_reduced = match &switched {
        Some((_, reduced)) => *reduced,
        None => {
            let reduced = reduce_bounding_set(effective)?;
            capset(kept_mask & permitted)?;
            reduced
        }
    };
    // The ambient set: cleared (it would hand capabilities to anything executed).
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        "PR_CAP_AMBIENT_CLEAR_ALL",
    )?;
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")?;
    let (effective, _, _) = capget()?;
    Ok(Dropped {
        user: switched.map(|(user, _)| user),
        kept: cap_names(effective),
        bounding_set_reduced,
        still_root: false,
    })
}

/// Supplementary groups (just the primary one), gid, then uid.
fn set_ids(uid: Uid, gid: Gid) -> Result<(), PrivilegeError> {
    let wrap = |what: &'static str| {
        move |e: nix::Error| PrivilegeError::Syscall {
            what,
            source: io::Error::from(e),
        }
    };
    nix::unistd::setgroups(&[gid]).map_err(wrap("setgroups"))?;
    nix::unistd::setgid(gid).map_err(wrap("setgid"))?;
    nix::unistd::setuid(uid).map_err(wrap("setuid"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_kept_capabilities() {
        assert_eq!(cap_names(1 << CAP_NET_RAW), ["cap_net_raw"]);
        assert_eq!(
            cap_names((1 << CAP_NET_RAW) | (1 << CAP_NET_BIND_SERVICE) | 1),
            ["cap_net_bind_service", "cap_net_raw"]
        );
        assert!(cap_names(0).is_empty());
    }

    #[test]
    fn capget_reads_this_thread() {
        let (effective, permitted, _) = capget().unwrap();
        assert_eq!(
            effective & !permitted,
            0,
            "effective is a subset of permitted"
        );
    }

    #[test]
    fn an_unknown_user_is_refused_before_anything_changes() {
        if !Uid::effective().is_root() {
            return;
        }
        let before = capget().unwrap();
        let e = drop_privileges(Some("no-such-user-ims-test")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(capget().unwrap(), before);
    }
}
