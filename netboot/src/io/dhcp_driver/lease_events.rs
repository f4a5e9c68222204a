//! Lease events for the outbox, decided in the committer from the lease writes it commits.
//!
//! The core says only "persist this lease"; whether that is a grant or a renewal depends on
//! what was stored before. The committer keeps, per address, the MAC, state and start of the
//! last committed lease (seeded from the server's table at start) and classifies each
//! `PutLease` of a batch against it:
//!
//! | written lease | stored before | event |
//! | --- | --- | --- |
//! | `Bound` | `Bound`, same MAC and start | [`EventKind::LeaseRenewed`] |
//! | `Bound` | anything else | [`EventKind::LeaseGranted`] |
//! | `Released` | `Bound` | [`EventKind::LeaseReleased`] |
//! | `Expired` | `Bound` | [`EventKind::LeaseExpired`] |
//! | `Declined`, or no change of binding | — | none |
//!
//! The events are appended as [`StoreOp::AppendEvent`] to the same commit, so an event exists
//! exactly when its lease is on disk. The tracking map is updated only after the commit
//! succeeded: a grant whose commit failed is still a grant when the client retries.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock};

use ims_proto::MacAddr;
use ipnet::Ipv4Net;

use crate::dhcp::{Lease, LeaseState, UnixTime};
use crate::store::StoreOp;
use crate::store::events::{EventKind, LeaseRecord};

/// The served subnets, shared with the loop (which replaces them with the configuration).
pub(super) type SharedSubnets = Arc<RwLock<Vec<Ipv4Net>>>;

/// What the committer remembers of an address's last committed lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known {
    mac: MacAddr,
    state: LeaseState,
    starts: UnixTime,
}

impl From<&Lease> for Known {
    fn from(l: &Lease) -> Self {
        Self {
            mac: l.mac,
            state: l.state,
            starts: l.starts,
        }
    }
}

/// Changes to the tracking map, applied once their commit succeeded.
pub(super) type Pending = Vec<(Ipv4Addr, Option<Known>)>;

/// The classifier. See the module docs.
#[derive(Debug)]
pub(super) struct LeaseEvents {
    known: BTreeMap<Ipv4Addr, Known>,
    subnets: SharedSubnets,
}

impl LeaseEvents {
    /// Start from the leases already stored.
    pub(super) fn new<'a>(
        leases: impl IntoIterator<Item = &'a Lease>,
        subnets: SharedSubnets,
    ) -> Self {
        Self {
            known: leases.into_iter().map(|l| (l.ip, Known::from(l))).collect(),
            subnets,
        }
    }

    /// The events `ops` cause, as `AppendEvent` operations stamped `now`, and the tracking
    /// changes to apply with [`LeaseEvents::committed`] once they are on disk.
    pub(super) fn events_for(&self, ops: &[StoreOp], now: UnixTime) -> (Vec<StoreOp>, Pending) {
        let mut overlay: BTreeMap<Ipv4Addr, Option<Known>> = BTreeMap::new();
        let mut events = Vec::new();
        let subnets = self.subnets.read().unwrap_or_else(PoisonError::into_inner);
        for op in ops {
            match op {
                StoreOp::PutLease(lease) => {
                    let before = match overlay.get(&lease.ip) {
                        Some(entry) => *entry,
                        None => self.known.get(&lease.ip).copied(),
                    };
                    let bound_before = before.filter(|k| k.state == LeaseState::Bound);
                    let kind = match lease.state {
                        LeaseState::Bound => {
                            let renewal = bound_before
                                .is_some_and(|k| k.mac == lease.mac && k.starts == lease.starts);
                            let record = record(lease, &subnets);
                            Some(if renewal {
                                EventKind::LeaseRenewed(record)
                            } else {
                                EventKind::LeaseGranted(record)
                            })
                        }
                        LeaseState::Released if bound_before.is_some() => {
                            Some(EventKind::LeaseReleased(record(lease, &subnets)))
                        }
                        LeaseState::Expired if bound_before.is_some() => {
                            Some(EventKind::LeaseExpired(record(lease, &subnets)))
                        }
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        events.push(StoreOp::AppendEvent { at: now, kind });
                    }
                    overlay.insert(lease.ip, Some(Known::from(lease)));
                }
                StoreOp::RemoveLease(ip) => {
                    overlay.insert(*ip, None);
                }
                StoreOp::PutDiscovered(_) | StoreOp::AppendEvent { .. } => {}
            }
        }
        (events, overlay.into_iter().collect())
    }

    /// The commit holding `pending` succeeded.
    pub(super) fn committed(&mut self, pending: Pending) {
        for (ip, known) in pending {
            match known {
                Some(k) => self.known.insert(ip, k),
                None => self.known.remove(&ip),
            };
        }
    }
}

fn record(lease: &Lease, subnets: &[Ipv4Net]) -> LeaseRecord {
    LeaseRecord {
        mac: lease.mac,
        ip: lease.ip,
        hostname: lease.hostname.clone(),
        ends: lease.ends,
        boot_file: lease.boot_file.clone(),
        subnet: subnets.iter().find(|s| s.contains(&lease.ip)).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(last: u8, state: LeaseState, starts: u64) -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, last),
            mac: MacAddr([0x52, 0x54, 0, 0, 0, last]),
            state,
            starts: UnixTime(starts),
            ends: UnixTime(starts + 3600),
            hostname: Some(format!("n{last}")),
            client_id: None,
            uuid: None,
            arch: None,
            boot_file: Some("ipxe.efi".into()),
            next_server: None,
        }
    }

    fn names(ops: &[StoreOp]) -> Vec<&str> {
        ops.iter()
            .map(|op| match op {
                StoreOp::AppendEvent { kind, .. } => kind.name(),
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn classifies_against_what_was_committed() {
        let subnets: SharedSubnets = Arc::new(RwLock::new(vec!["10.0.0.0/24".parse().unwrap()]));
        let stored = lease(1, LeaseState::Bound, 100);
        let mut ev = LeaseEvents::new([&stored], Arc::clone(&subnets));
        let ops = vec![
            StoreOp::PutLease(lease(1, LeaseState::Bound, 100)), // renewal
            StoreOp::PutLease(lease(2, LeaseState::Bound, 200)), // grant
            StoreOp::PutLease(lease(2, LeaseState::Bound, 200)), // renewal within the batch
            StoreOp::PutLease(lease(3, LeaseState::Released, 0)), // never bound: nothing
            StoreOp::PutLease(lease(2, LeaseState::Released, 200)),
            StoreOp::PutLease(lease(4, LeaseState::Declined, 0)),
            StoreOp::RemoveLease(Ipv4Addr::new(10, 0, 0, 4)),
        ];
        let (events, pending) = ev.events_for(&ops, UnixTime(500));
        assert_eq!(
            names(&events),
            [
                "LeaseRenewed",
                "LeaseGranted",
                "LeaseRenewed",
                "LeaseReleased"
            ]
        );
        match &events[1] {
            StoreOp::AppendEvent {
                at,
                kind: EventKind::LeaseGranted(r),
            } => {
                assert_eq!(*at, UnixTime(500));
                assert_eq!(r.ip, Ipv4Addr::new(10, 0, 0, 2));
                assert_eq!(r.subnet, Some("10.0.0.0/24".parse().unwrap()));
                assert_eq!(r.boot_file.as_deref(), Some("ipxe.efi"));
            }
            other => panic!("{other:?}"),
        }
        // Until committed, the same writes classify the same way (a failed commit retried).
        let (again, _) = ev.events_for(&ops[1..2], UnixTime(501));
        assert_eq!(names(&again), ["LeaseGranted"]);
        ev.committed(pending);
        let (after, _) = ev.events_for(
            &[
                StoreOp::PutLease(lease(2, LeaseState::Bound, 600)), // a new binding: grant
                StoreOp::PutLease(lease(1, LeaseState::Expired, 100)),
                StoreOp::PutLease(lease(4, LeaseState::Bound, 700)), // removed before: grant
            ],
            UnixTime(800),
        );
        assert_eq!(
            names(&after),
            ["LeaseGranted", "LeaseExpired", "LeaseGranted"]
        );
        // Another MAC binding the address is a grant, not a renewal.
        let mut other = lease(1, LeaseState::Bound, 100);
        other.mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let (moved, _) = ev.events_for(&[StoreOp::PutLease(other)], UnixTime(900));
        assert_eq!(names(&moved), ["LeaseGranted"]);
    }
}
