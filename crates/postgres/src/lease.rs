//! Partition leases: how several hosts on one database split the
//! instances and entities between them, and how a dead host's share is
//! taken over (decisions 1 and 2 of `shared/design/scale-out.md`).
//!
//! Invariants:
//! - Every lease time is the database's clock (`now()`); hosts' clocks
//!   are never compared.
//! - Taking a partition bumps its epoch. A write of a partition first
//!   takes a share lock on its row and checks the epoch ([`fence`]); a
//!   takeover (`FOR UPDATE SKIP LOCKED`) passes a row under that lock by
//!   and takes it at a later tick, so a write either commits before the
//!   takeover or sees the new epoch and aborts. A host paused past its
//!   lease can never commit over its successor.
//! - A host takes at most its fair share (partitions / live hosts, rounded
//!   up) and gives back what it holds beyond it, so a joining host gets
//!   work within one renewal and no partition is wanted by two hosts for
//!   long.
//! - Lease writes can be recreated (a lost renewal is renewed again), so
//!   they commit with `synchronous_commit = off`; fencing never relies on
//!   them surviving a crash of the server, only on the epoch, which a
//!   takeover writes durably.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use perdure_storage::StorageError;

use crate::connect::{pg_error, pool_error};

pub use perdure_storage::placement::{PartitionId, partition_of};

/// Why a write of a partition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "partition {partition} moved to epoch {found} (this host held epoch {held}); the write is refused"
)]
pub struct Fenced {
    pub partition: PartitionId,
    pub held: i64,
    pub found: i64,
}

/// Checks, inside a write transaction, that this host still holds
/// `partition` at `epoch`, and keeps it from changing owner until the
/// transaction ends.
pub async fn fence(
    tx: &tokio_postgres::Transaction<'_>,
    partition: PartitionId,
    epoch: i64,
) -> Result<Result<(), Fenced>, tokio_postgres::Error> {
    let found: i64 = tx
        .query_one(
            "SELECT epoch FROM partitions WHERE id = $1 FOR SHARE",
            &[&partition],
        )
        .await?
        .try_get(0)?;
    Ok(if found == epoch {
        Ok(())
    } else {
        Err(Fenced {
            partition,
            held: epoch,
            found,
        })
    })
}

/// One host's leases on one database.
pub struct Leases {
    pool: Pool,
    host: String,
    address: String,
    lease: Duration,
    /// The partitions held, with the epoch each was taken at.
    held: BTreeMap<PartitionId, i64>,
}

/// What one [`Leases::tick`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    /// Taken, with their new epochs.
    pub gained: Vec<(PartitionId, i64)>,
    /// Held before, and no longer: released beyond the fair share, or lost
    /// (taken by another host after this one's lease ran out).
    pub lost: Vec<PartitionId>,
}

impl Leases {
    /// Leases for host `host` on the database at `url` (creating or
    /// migrating its schema), on connections of their own.
    pub async fn connect(
        url: &str,
        host: String,
        address: &str,
        lease: Duration,
    ) -> Result<Self, StorageError> {
        let pool = crate::connect::pool(crate::connect::parse(url)?, 2)?;
        let mut client = pool.get().await.map_err(pool_error)?;
        crate::migrate(&mut client).await?;
        drop(client);
        Self::start(pool, host, address, lease).await
    }

    /// Leases for host `host` (a unique id), each lasting `lease` from its
    /// last renewal. Records the host as running.
    pub(crate) async fn start(
        pool: Pool,
        host: String,
        address: &str,
        lease: Duration,
    ) -> Result<Self, StorageError> {
        let client = pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO hosts (id, address, started_at, heartbeat) VALUES ($1, $2, now(), now())
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address, started_at = now(), heartbeat = now()",
                &[&host, &address],
            )
            .await
            .map_err(pg_error)?;
        Ok(Self {
            pool,
            host,
            address: address.to_owned(),
            lease,
            held: BTreeMap::new(),
        })
    }

    /// The partitions held, with their epochs.
    pub fn held(&self) -> &BTreeMap<PartitionId, i64> {
        &self.held
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where this host serves, written at the next [`Self::tick`].
    pub fn set_address(&mut self, address: String) {
        self.address = address;
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long a transaction of a host holding partitions may stay open
    /// with nothing sent before the server ends it: half a lease, so that
    /// a host paused inside one releases its row locks before its lease
    /// runs out and others can take its partitions.
    pub fn idle_limit(&self) -> Duration {
        (self.lease / 2).max(Duration::from_millis(100))
    }

    /// How often [`Self::tick`] should run: a third of the lease, so two
    /// renewals can fail before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Renews what is held, gives back what is beyond the fair share, and
    /// takes free or expired partitions up to it. One transaction.
    pub async fn tick(&mut self) -> Result<LeaseChanges, StorageError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        // The lease, from milliseconds, in the statements below.
        let lease = "make_interval(secs => $2::bigint / 1000.0)";
        tx.batch_execute(&format!(
            "SET LOCAL synchronous_commit = off; SET LOCAL idle_in_transaction_session_timeout = {}",
            self.idle_limit().as_millis()
        ))
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE hosts SET heartbeat = now(), address = $2 WHERE id = $1",
            &[&self.host, &self.address],
        )
        .await
        .map_err(pg_error)?;
        // Hosts gone for an hour that hold nothing are forgotten (their
        // work items, if any, are any live host's to take).
        tx.execute(
            "DELETE FROM hosts h WHERE heartbeat < now() - interval '1 hour'
             AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.owner = h.id)",
            &[],
        )
        .await
        .map_err(pg_error)?;
        // Rows under this host's id that it does not hold (a release lost
        // in a server crash, a restart under the same id) go back, so that
        // whoever takes them bumps the epoch; none is renewed unheld.
        let held: Vec<PartitionId> = self.held.keys().copied().collect();
        tx.execute(
            "UPDATE partitions SET owner = NULL, lease_until = NULL
             WHERE owner = $1 AND NOT (id = ANY($2))",
            &[&self.host, &held],
        )
        .await
        .map_err(pg_error)?;
        // Renewal: only what this host still owns at the epoch it took.
        let renewed = tx
            .query(
                &format!(
                    "UPDATE partitions SET lease_until = now() + {lease}
                     WHERE owner = $1 AND id = ANY($3) RETURNING id, epoch"
                ),
                &[&self.host, &lease_ms, &held],
            )
            .await
            .map_err(pg_error)?;
        let mut still = BTreeMap::new();
        for row in renewed {
            let (id, epoch): (PartitionId, i64) = (
                row.try_get(0).map_err(pg_error)?,
                row.try_get(1).map_err(pg_error)?,
            );
            if self.held.get(&id) == Some(&epoch) {
                still.insert(id, epoch);
            }
        }
        let mut changes = LeaseChanges {
            lost: self
                .held
                .keys()
                .filter(|id| !still.contains_key(id))
                .copied()
                .collect(),
            ..LeaseChanges::default()
        };
        let count: i64 = tx
            .query_one("SELECT count(*) FROM partitions", &[])
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM hosts WHERE heartbeat > now() - make_interval(secs => $1::bigint / 1000.0)",
                &[&lease_ms],
            )
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        let fair = (count + live.max(1) - 1) / live.max(1);
        let held = still.len() as i64;
        if held > fair {
            // Beyond the fair share: the highest partitions go back.
            let extra: Vec<PartitionId> = still
                .keys()
                .rev()
                .take((held - fair) as usize)
                .copied()
                .collect();
            tx.execute(
                "UPDATE partitions SET owner = NULL, lease_until = NULL WHERE owner = $1 AND id = ANY($2)",
                &[&self.host, &extra],
            )
            .await
            .map_err(pg_error)?;
            for id in extra {
                still.remove(&id);
                changes.lost.push(id);
            }
        } else if held < fair {
            let taken = tx
                .query(
                    &format!(
                        "UPDATE partitions SET owner = $1, epoch = epoch + 1, lease_until = now() + {lease}
                         WHERE id IN (SELECT id FROM partitions
                                      WHERE owner IS NULL OR lease_until < now()
                                      ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                         RETURNING id, epoch"
                    ),
                    &[&self.host, &lease_ms, &(fair - held)],
                )
                .await
                .map_err(pg_error)?;
            for row in taken {
                let (id, epoch): (PartitionId, i64) = (
                    row.try_get(0).map_err(pg_error)?,
                    row.try_get(1).map_err(pg_error)?,
                );
                still.insert(id, epoch);
                changes.gained.push((id, epoch));
            }
        }
        if !changes.gained.is_empty() {
            // A takeover must outlive a crash of the server: its epoch is
            // what fences the previous owner.
            tx.batch_execute("SET LOCAL synchronous_commit = on")
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        self.held = still;
        Ok(changes)
    }

    /// Gives every held partition back at once (a graceful shutdown), so
    /// other hosts take them at their next tick instead of after the lease.
    pub async fn release_all(&mut self) -> Result<(), StorageError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "UPDATE partitions SET owner = NULL, lease_until = NULL WHERE owner = $1",
                &[&self.host],
            )
            .await
            .map_err(pg_error)?;
        client
            .execute("DELETE FROM hosts WHERE id = $1", &[&self.host])
            .await
            .map_err(pg_error)?;
        self.held.clear();
        Ok(())
    }
}
