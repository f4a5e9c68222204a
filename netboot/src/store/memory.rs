//! In-memory lease store for tests and benches: [`LeaseStore`] over `BTreeMap`s, with the same
//! observable behaviour as [`super::lmdb::LmdbStore`] (ops applied in order, all or nothing,
//! leases loaded in address order) and nothing durable.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ims_proto::MacAddr;

use super::events::EventKind;
use super::{LeaseStore, StoreError, StoreOp};
use crate::dhcp::{DiscoveredMachine, Lease, UnixTime};

/// A lease store held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    leases: BTreeMap<Ipv4Addr, Lease>,
    discovered: BTreeMap<MacAddr, DiscoveredMachine>,
    events: Vec<(UnixTime, EventKind)>,
    commits: u64,
    fail_commits: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store already holding `leases` (as if loaded from disk).
    pub fn with_leases(leases: impl IntoIterator<Item = Lease>) -> Self {
        Self {
            leases: leases.into_iter().map(|l| (l.ip, l)).collect(),
            ..Self::default()
        }
    }

    /// Number of stored leases (any state).
    pub fn lease_count(&self) -> u64 {
        self.leases.len() as u64
    }

    /// The lease stored under `ip`, if any.
    pub fn lease(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    /// Events appended with [`StoreOp::AppendEvent`], in order.
    pub fn events(&self) -> &[(UnixTime, EventKind)] {
        &self.events
    }

    /// How many `commit` calls succeeded (to check that a driver groups writes).
    pub fn commit_count(&self) -> u64 {
        self.commits
    }

    /// Make every following `commit` fail (true) or succeed again (false), as a full disk would;
    /// a failed commit applies nothing.
    pub fn set_fail_commits(&mut self, fail: bool) {
        self.fail_commits = fail;
    }
}

impl LeaseStore for MemoryStore {
    fn load_leases(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(self.leases.values().cloned().collect())
    }

    fn load_discovered(&self) -> Result<Vec<DiscoveredMachine>, StoreError> {
        Ok(self.discovered.values().cloned().collect())
    }

    fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        if self.fail_commits {
            return Err(StoreError::Io {
                path: "<memory>".to_owned(),
                source: std::io::Error::other("commit failure injected by set_fail_commits"),
            });
        }
        for op in ops {
            match op {
                StoreOp::PutLease(lease) => {
                    self.leases.insert(lease.ip, lease.clone());
                }
                StoreOp::RemoveLease(ip) => {
                    self.leases.remove(ip);
                }
                StoreOp::PutDiscovered(machine) => {
                    self.discovered.insert(machine.mac, machine.clone());
                }
                StoreOp::AppendEvent { at, kind } => self.events.push((*at, kind.clone())),
            }
        }
        self.commits += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::dhcp::{LeaseState, UnixTime};
    use crate::store::lmdb::LmdbStore;
    use crate::store::lmdb::tests::{TempDir, discovered, lease};

    #[test]
    fn failed_commit_applies_nothing() {
        let mut store = MemoryStore::with_leases([lease(1, 1)]);
        store.set_fail_commits(true);
        assert!(store.commit(&[StoreOp::PutLease(lease(2, 2))]).is_err());
        assert_eq!(store.load_leases().unwrap(), vec![lease(1, 1)]);
        assert_eq!(store.commit_count(), 0);
        store.set_fail_commits(false);
        store.commit(&[StoreOp::PutLease(lease(2, 2))]).unwrap();
        assert_eq!(store.lease_count(), 2);
        assert_eq!(store.lease(Ipv4Addr::new(10, 77, 0, 2)), Some(&lease(2, 2)));
        assert_eq!(store.commit_count(), 1);
    }

    /// One op drawn from a small address and MAC space, so puts, replaces and removes collide.
    fn op_strategy() -> impl Strategy<Value = StoreOp> {
        prop_oneof![
            (0u8..8, 0u8..4, 0u8..4, any::<Option<u16>>()).prop_map(|(ip, mac, state, arch)| {
                let mut l = lease(ip, mac);
                l.state = [
                    LeaseState::Bound,
                    LeaseState::Released,
                    LeaseState::Expired,
                    LeaseState::Declined,
                ][usize::from(state)];
                l.arch = arch;
                l.ends = UnixTime(1_700_000_000 + u64::from(ip) * 60);
                StoreOp::PutLease(l)
            }),
            (0u8..8).prop_map(|ip| StoreOp::RemoveLease(Ipv4Addr::new(10, 77, 0, ip))),
            (0u8..4, any::<u64>()).prop_map(|(mac, seen)| {
                let mut d = discovered(mac);
                d.last_seen = UnixTime(seen);
                StoreOp::PutDiscovered(d)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Both stores agree after every batch of a random op sequence, and LMDB still agrees
        /// after a reopen.
        #[test]
        fn memory_and_lmdb_agree(
            batches in prop::collection::vec(prop::collection::vec(op_strategy(), 0..12), 1..8)
        ) {
            let dir = TempDir::new("agree");
            let mut lmdb = LmdbStore::open(dir.path()).unwrap();
            let mut memory = MemoryStore::new();
            for batch in &batches {
                lmdb.commit(batch).unwrap();
                memory.commit(batch).unwrap();
                prop_assert_eq!(lmdb.load_leases().unwrap(), memory.load_leases().unwrap());
                prop_assert_eq!(lmdb.load_discovered().unwrap(), memory.load_discovered().unwrap());
                prop_assert_eq!(lmdb.lease_count().unwrap(), memory.lease_count());
            }
            drop(lmdb);
            let lmdb = LmdbStore::open(dir.path()).unwrap();
            prop_assert_eq!(lmdb.load_leases().unwrap(), memory.load_leases().unwrap());
            prop_assert_eq!(lmdb.load_discovered().unwrap(), memory.load_discovered().unwrap());
        }
    }
}
