//! Which instances and entities a host runs when several hosts share one
//! database (decisions 1-5 of `shared/design/scale-out.md`).
//!
//! Instances and entities are hashed into a fixed number of partitions;
//! a host runs the sessions, entity batches and wake-ups of the
//! partitions it holds. A backend that lets hosts share it implements
//! [`Placement`]; one that has a single host (SQLite) has none, and its
//! host runs everything.
//!
//! Invariants:
//! - [`partition_of`] is the same on every host and every version: it
//!   decides who runs what.
//! - A write the backend makes for an instance or entity of a partition
//!   this host does not hold (at the moment of the write, checked under
//!   the partition's fence) leaves a wake-up for its owner in the same
//!   transaction; the engine delivers locally only what this host holds.

use perdure_records::{EntityId, InstanceId};
use tokio::sync::mpsc;

/// A partition's number.
pub type PartitionId = i32;

/// The partition a key (see [`instance_key`], [`entity_key`]) belongs to,
/// of `count`: FNV-1a over the key's bytes.
pub fn partition_of(key: &str, count: u32) -> PartitionId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as PartitionId
}

/// What an instance is partitioned by: its id.
pub fn instance_key(id: &InstanceId) -> &str {
    id.as_str()
}

/// What an entity is partitioned by: `@name@key` (an instance id equal to
/// it only shares its partition).
pub fn entity_key(id: &EntityId) -> String {
    format!("@{}@{}", id.name, id.key)
}

/// What changed in what a host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementEvent {
    /// Partitions this host took: their unfinished instances and queued
    /// entity messages are its to run from now on.
    Gained(Vec<PartitionId>),
    /// Partitions this host no longer holds: its sessions of them stop
    /// (their writes would be refused).
    Lost(Vec<PartitionId>),
    /// Another host wrote for these instances and entities of this host's
    /// partitions: look at them again.
    Wake {
        instances: Vec<InstanceId>,
        entities: Vec<EntityId>,
    },
}

/// What a host's leases did since it started (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlacementCounters {
    /// Partitions held now.
    pub held: u64,
    /// Lease renewals that succeeded.
    pub renewals: u64,
    /// Partitions taken (at start, from a host that left or died, or past
    /// a fair share another host gave back).
    pub gained: u64,
    /// Partitions given back or taken by another host.
    pub lost: u64,
}

/// A host of a shared database, as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub id: String,
    /// Where it serves.
    pub address: String,
    pub started_ms: i64,
    /// Its last lease renewal (the database's clock).
    pub heartbeat_ms: i64,
    /// It holds a partition lease that has not run out.
    pub alive: bool,
    pub partitions: u32,
    /// Work items (activities) it has leased.
    pub work_items: u64,
}

/// One partition's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub id: PartitionId,
    pub owner: Option<String>,
    pub epoch: i64,
    pub lease_until_ms: Option<i64>,
}

/// The hosts of a shared database and their partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The host that answered.
    pub host_id: String,
    pub lease_ms: i64,
    /// The database's clock when read.
    pub now_ms: i64,
    pub hosts: Vec<HostStatus>,
    pub partitions: Vec<PartitionStatus>,
}

/// An app as the hosts of a database share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedApp {
    pub name: String,
    /// The component's digest (its bytes are a stored component); `None`:
    /// the app was removed.
    pub digest: Option<String>,
    /// Its `NAME.toml`, if it has one.
    pub config: Option<String>,
    /// When it was published (the publishing host's clock).
    pub updated_ms: i64,
}

/// The partitions one host holds.
pub trait Placement: Send + Sync + 'static {
    /// How many partitions the database has.
    fn partition_count(&self) -> u32;

    /// Whether this host holds `partition` now (as far as it knows: a
    /// write checks again under the partition's fence).
    fn holds(&self, partition: PartitionId) -> bool;

    /// This host's id among the hosts of the database.
    fn host_id(&self) -> &str;

    /// The events, for the one who takes them first (the engine).
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<PlacementEvent>>;

    /// What the leases did so far.
    fn counters(&self) -> PlacementCounters;

    /// Every host and partition, read from the database.
    fn status(&self) -> crate::StorageFuture<'_, ClusterStatus>;

    /// Records where this host serves (once it listens), for other hosts
    /// and operators; written at the next renewal.
    fn announce(&self, address: String);

    /// Changes whenever a host may have changed what all share: apps and
    /// function keys (at a notification, after the listener reconnects,
    /// and every few seconds, as notifications can be lost).
    fn shared_changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The apps as published, removed ones included.
    fn shared_apps(&self) -> crate::StorageFuture<'_, Vec<SharedApp>>;

    /// Publishes an app (its bytes, unless it is removed); returns whether
    /// that changed what the hosts share. Tells the other hosts.
    fn publish_app(
        &self,
        app: SharedApp,
        bytes: Option<std::sync::Arc<[u8]>>,
    ) -> crate::StorageFuture<'_, bool>;

    fn owns_instance(&self, id: &InstanceId) -> bool {
        self.holds(partition_of(instance_key(id), self.partition_count()))
    }

    fn owns_entity(&self, id: &EntityId) -> bool {
        self.holds(partition_of(&entity_key(id), self.partition_count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned: every host and every version must agree.
        assert_eq!(partition_of("a", 64), partition_of("a", 64));
        assert_eq!(
            partition_of("", 64),
            (0xcbf2_9ce4_8422_2325_u64 % 64) as i32
        );
        // FNV-1a("abc") = 0xe71fa2190541574b.
        assert_eq!(partition_of("abc", 64), 11);
        let mut counts = [0u32; 64];
        for i in 0..6400 {
            counts[partition_of(&format!("instance-{i}"), 64) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (50..=150).contains(&n)),
            "spread: {counts:?}"
        );
    }
}
