//! One host among several on a database: the partitions it holds (renewed
//! by [`Leases`]), the fence every write transaction takes on them, the
//! wake-ups it leaves for other hosts' partitions, and the ones it takes
//! for its own (LISTEN/NOTIFY, with polling as the fallback).
//!
//! Invariants:
//! - The writer fences each transaction before its first job: it takes a
//!   share lock on the rows of the partitions this host holds and keeps
//!   those whose epoch is still the one taken ([`Cluster::fence`]). A
//!   takeover skips locked rows, so for the rest of the transaction the
//!   fenced partitions cannot change owner; jobs ask [`Cluster::check`]
//!   and [`Cluster::route`] against that set, never against the lease
//!   state, which may be stale.
//! - A write for a target outside the fenced set inserts a wake-up row
//!   (same transaction) and notifies; the owner deletes the rows it acts
//!   on. A notification is only a hint: a host polls its rows every
//!   [`ClusterOptions::poll`] and after its listener reconnects, and
//!   rescans a partition it gains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use perdure_records::{Effects, EntityId, InstanceId};
use perdure_storage::StorageError;
use perdure_storage::StorageFuture;
use perdure_storage::placement::{
    ClusterStatus, HostStatus, PartitionId, PartitionStatus, Placement, PlacementCounters,
    PlacementEvent, SharedApp, entity_key, instance_key, partition_of,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_postgres::{AsyncMessage, Error};

use crate::connect::{pg_error, pool_error};
use crate::durable::Param;
use crate::lease::{LeaseChanges, Leases};

tokio::task_local! {
    /// The partitions the current write transaction fenced: each writer
    /// task runs in a scope of its own.
    pub(crate) static FENCED: std::cell::RefCell<BTreeSet<PartitionId>>;
}

/// The channel wake-ups are notified on.
const CHANNEL: &str = "perdure_wake";

/// The channel changes of shared apps and keys are notified on.
pub(crate) const SHARED_CHANNEL: &str = "perdure_shared";

/// How often shared apps and keys are looked at without a notification.
const SHARED_POLL: Duration = Duration::from_secs(5);

/// How a host takes part in a shared database.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Unique among the database's hosts. A host restarted under the same
    /// id takes its partitions back at once instead of after the lease.
    pub host_id: String,
    /// Where the host serves, as other hosts and operators reach it.
    pub address: String,
    /// How long a partition stays leased without renewal: a killed host's
    /// partitions are taken over after this.
    pub lease: Duration,
    /// How often wake-ups are polled when no notification comes.
    pub poll: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            host_id: default_host_id(),
            address: String::new(),
            lease: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

/// `HOSTNAME-RANDOM`: unique per process.
pub fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "host".into());
    let random = InstanceId::generate();
    format!("{name}-{}", &random.as_str()[..8])
}

/// This host's share of the database.
pub(crate) struct Cluster {
    host: String,
    count: u32,
    renew_every: Duration,
    /// How long a write transaction may sit idle on the server (half a
    /// lease) before the server ends it.
    idle_limit_ms: u128,
    /// The partitions held, with the epoch each was taken at.
    held: RwLock<BTreeMap<PartitionId, i64>>,
    events: mpsc::UnboundedSender<PlacementEvent>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<PlacementEvent>>>,
    /// Polls the wake-ups now.
    poke: Notify,
    /// Bumped when shared apps or keys may have changed.
    shared: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    leases: tokio::sync::Mutex<Leases>,
    lease: Duration,
    /// For [`Placement::status`].
    pool: Pool,
    renewals: AtomicU64,
    gained: AtomicU64,
    lost: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Itself, for tasks [`Placement::announce`] spawns.
    me: Weak<Cluster>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Joins the database's hosts and takes this host's first share of
    /// the partitions before returning, so that recovery sees them.
    pub(crate) async fn join(
        pool: Pool,
        listen: tokio_postgres::Config,
        options: ClusterOptions,
    ) -> Result<Arc<Self>, StorageError> {
        let lease_pool = crate::connect::pool(listen.clone(), 2)?;
        let mut leases = Leases::start(
            lease_pool,
            options.host_id.clone(),
            &options.address,
            options.lease,
        )
        .await?;
        let count: i64 = pool
            .get()
            .await
            .map_err(pool_error)?
            .query_one("SELECT count(*) FROM partitions", &[])
            .await
            .map_err(pg_error)?
            .try_get(0)
            .map_err(pg_error)?;
        let first = leases.tick().await?;
        let (events, receiver) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let cluster = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            host: options.host_id.clone(),
            count: u32::try_from(count).unwrap_or(1).max(1),
            renew_every: leases.renew_every(),
            idle_limit_ms: leases.idle_limit().as_millis(),
            lease: leases.lease(),
            pool: pool.clone(),
            renewals: AtomicU64::new(0),
            gained: AtomicU64::new(first.gained.len() as u64),
            lost: AtomicU64::new(0),
            held: RwLock::new(leases.held().clone()),
            events,
            receiver: Mutex::new(Some(receiver)),
            poke: Notify::new(),
            shared: watch::Sender::new(0),
            stop,
            leases: tokio::sync::Mutex::new(leases),
            tasks: Mutex::new(Vec::new()),
        });
        tracing::info!(
            host = %cluster.host,
            partitions = first.gained.len(),
            of = cluster.count,
            "joined the database's hosts"
        );
        let tasks = vec![
            tokio::spawn(renew(Arc::downgrade(&cluster))),
            tokio::spawn(poll(Arc::downgrade(&cluster), pool, options.poll)),
            tokio::spawn(look_again_at_shared(Arc::downgrade(&cluster))),
            tokio::spawn(listen_for_wakeups(Arc::downgrade(&cluster), listen)),
        ];
        *lock(&cluster.tasks) = tasks;
        Ok(cluster)
    }

    /// Stops renewing and gives every partition back at once, so other
    /// hosts take them at their next renewal. Call after the last write.
    pub(crate) async fn leave(&self) {
        let _ = self.stop.send(true);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let mut leases = self.leases.lock().await;
        match leases.release_all().await {
            Ok(()) => tracing::info!(host = %self.host, "released this host's partitions"),
            Err(e) => tracing::warn!(
                "cannot release this host's partitions (others take them when the lease ends): {e}"
            ),
        }
        self.held.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Fences the writer's transaction `tx`: locks the rows of the
    /// partitions held and keeps those still at the epoch taken.
    pub(crate) async fn fence<C: GenericClient>(&self, tx: &C) -> Result<(), Error> {
        let held: Vec<(PartitionId, i64)> =
            read(&self.held).iter().map(|(p, e)| (*p, *e)).collect();
        let ids: Vec<PartitionId> = held.iter().map(|(p, _)| *p).collect();
        let select = tx
            .prepare_cached(
                "SELECT id, epoch FROM partitions WHERE id = ANY($1) AND owner = $2
                 ORDER BY id FOR SHARE",
            )
            .await?;
        // The host that leases work items in this transaction (see the
        // `work_items.claimed_by` column), and how long the server lets it
        // stay open while this side sends nothing: a host paused (or cut
        // off) in the middle of a transaction would otherwise keep its
        // share locks, and with them its partitions, from every takeover.
        let host = tx
            .prepare_cached(
                "SELECT set_config('perdure.host', $1, true),
                        set_config('idle_in_transaction_session_timeout', $2, true)",
            )
            .await?;
        let idle = self.idle_limit_ms.to_string();
        let (fence_args, host_args): ([Param<'_>; 2], [Param<'_>; 2]) =
            ([&ids, &self.host], [&self.host, &idle]);
        let (rows, _) = tokio::try_join!(
            tx.query(&select, &fence_args),
            tx.execute(&host, &host_args)
        )?;
        let mut fenced = BTreeSet::new();
        for row in rows {
            let (id, epoch): (PartitionId, i64) = (row.try_get(0)?, row.try_get(1)?);
            if held.contains(&(id, epoch)) {
                fenced.insert(id);
            }
        }
        // Each writer task has its own (see `writer::run`).
        let _ = FENCED.try_with(|current| *current.borrow_mut() = fenced);
        Ok(())
    }

    fn fenced(&self, key: &str) -> Result<(), PartitionId> {
        let partition = partition_of(key, self.count);
        let held = FENCED
            .try_with(|fenced| fenced.borrow().contains(&partition))
            .unwrap_or(false);
        if held { Ok(()) } else { Err(partition) }
    }

    /// Whether the current transaction may write as the owner of the
    /// instance (or entity) keyed `key`.
    pub(crate) fn check(&self, key: &str) -> Result<(), StorageError> {
        self.fenced(key)
            .map_err(|partition| StorageError::Moved { partition })
    }

    /// Leaves wake-ups, in the current transaction, for the instances and
    /// entities outside the fenced partitions; notifies once if it left any.
    pub(crate) async fn route<'i, C: GenericClient>(
        &self,
        c: &C,
        instances: impl IntoIterator<Item = &'i InstanceId>,
        entities: impl IntoIterator<Item = &'i EntityId>,
    ) -> Result<(), Error> {
        let mut rows: BTreeSet<(PartitionId, &'static str, String)> = BTreeSet::new();
        for id in instances {
            if let Err(partition) = self.fenced(instance_key(id)) {
                rows.insert((partition, "i", id.as_str().to_owned()));
            }
        }
        for id in entities {
            if let Err(partition) = self.fenced(&entity_key(id)) {
                rows.insert((partition, "e", id.to_string()));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut partitions = Vec::with_capacity(rows.len());
        let mut kinds = Vec::with_capacity(rows.len());
        let mut targets = Vec::with_capacity(rows.len());
        for (partition, kind, target) in rows {
            partitions.push(partition);
            kinds.push(kind);
            targets.push(target);
        }
        let insert = c
            .prepare_cached(
                "INSERT INTO wakeups (partition, kind, target)
                 SELECT * FROM unnest($1::int[], $2::text[], $3::text[])
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let notify = c.prepare_cached("SELECT pg_notify($1, '')").await?;
        let (rows, channel): ([Param<'_>; 3], [Param<'_>; 1]) =
            ([&partitions, &kinds, &targets], [&CHANNEL]);
        tokio::try_join!(c.execute(&insert, &rows), c.execute(&notify, &channel))?;
        Ok(())
    }

    /// As [`Self::route`], for everything `effects` reaches.
    pub(crate) async fn route_effects<C: GenericClient>(
        &self,
        c: &C,
        effects: &Effects,
    ) -> Result<(), Error> {
        let instances = effects
            .messages
            .iter()
            .map(|(id, _)| id)
            .chain(&effects.wake)
            .chain(&effects.cancelled);
        self.route(c, instances, &effects.entities).await
    }

    fn apply(&self, changes: LeaseChanges, held: &BTreeMap<PartitionId, i64>) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = held.clone();
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.gained
            .fetch_add(changes.gained.len() as u64, Ordering::Relaxed);
        self.lost
            .fetch_add(changes.lost.len() as u64, Ordering::Relaxed);
        if !changes.lost.is_empty() {
            tracing::info!(partitions = ?changes.lost, "partitions moved to other hosts");
            let _ = self.events.send(PlacementEvent::Lost(changes.lost));
        }
        if !changes.gained.is_empty() {
            let gained: Vec<PartitionId> = changes.gained.iter().map(|(p, _)| *p).collect();
            tracing::info!(partitions = ?gained, "took partitions");
            let _ = self.events.send(PlacementEvent::Gained(gained));
            self.poke.notify_one();
        }
    }
}

impl Placement for Cluster {
    fn partition_count(&self) -> u32 {
        self.count
    }

    fn holds(&self, partition: PartitionId) -> bool {
        read(&self.held).contains_key(&partition)
    }

    fn host_id(&self) -> &str {
        &self.host
    }

    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<PlacementEvent>> {
        lock(&self.receiver).take()
    }

    fn counters(&self) -> PlacementCounters {
        PlacementCounters {
            held: read(&self.held).len() as u64,
            renewals: self.renewals.load(Ordering::Relaxed),
            gained: self.gained.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    fn status(&self) -> StorageFuture<'_, ClusterStatus> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            status(&client, &self.host, self.lease)
                .await
                .map_err(pg_error)
        })
    }

    fn shared_changes(&self) -> watch::Receiver<u64> {
        self.shared.subscribe()
    }

    fn shared_apps(&self) -> StorageFuture<'_, Vec<SharedApp>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT name, digest, config, updated_ms FROM apps ORDER BY name",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|row| {
                    Ok(SharedApp {
                        name: row.try_get(0)?,
                        digest: row.try_get(1)?,
                        config: row.try_get(2)?,
                        updated_ms: row.try_get(3)?,
                    })
                })
                .collect::<Result<_, Error>>()
                .map_err(pg_error)
        })
    }

    fn publish_app(&self, app: SharedApp, bytes: Option<Arc<[u8]>>) -> StorageFuture<'_, bool> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(pg_error)?;
            if let (Some(digest), Some(bytes)) = (&app.digest, &bytes) {
                tx.execute(
                    "INSERT INTO components (digest, bytes, created_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (digest) DO NOTHING",
                    &[digest, &&bytes[..], &app.updated_ms],
                )
                .await
                .map_err(pg_error)?;
            }
            let changed = tx
                .execute(
                    "INSERT INTO apps (name, digest, config, updated_ms, updated_by)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE
                     SET digest = excluded.digest, config = excluded.config,
                         updated_ms = excluded.updated_ms, updated_by = excluded.updated_by
                     WHERE apps.digest IS DISTINCT FROM excluded.digest
                        OR apps.config IS DISTINCT FROM excluded.config",
                    &[
                        &app.name,
                        &app.digest,
                        &app.config,
                        &app.updated_ms,
                        &self.host,
                    ],
                )
                .await
                .map_err(pg_error)?
                > 0;
            if changed {
                tx.execute("SELECT pg_notify($1, '')", &[&SHARED_CHANNEL])
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(changed)
        })
    }

    fn announce(&self, address: String) {
        let Some(cluster) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move { cluster.leases.lock().await.set_address(address) });
    }
}

/// Every host and partition of the database.
async fn status(
    c: &deadpool_postgres::Client,
    host: &str,
    lease: Duration,
) -> Result<ClusterStatus, Error> {
    let ms = |column: &str| format!("(extract(epoch FROM {column}) * 1000)::bigint");
    let hosts = c
        .query(
            &format!(
                "SELECT h.id, h.address, {}, {},
                        EXISTS (SELECT 1 FROM partitions p WHERE p.owner = h.id AND p.lease_until > now()),
                        (SELECT count(*) FROM partitions p WHERE p.owner = h.id),
                        (SELECT count(*) FROM work_items w WHERE w.claimed_by = h.id)
                 FROM hosts h ORDER BY h.id",
                ms("h.started_at"),
                ms("h.heartbeat")
            ),
            &[],
        )
        .await?;
    let partitions = c
        .query(
            &format!(
                "SELECT id, owner, epoch, {} FROM partitions ORDER BY id",
                ms("lease_until")
            ),
            &[],
        )
        .await?;
    let now: i64 = c
        .query_one(&format!("SELECT {}", ms("now()")), &[])
        .await?
        .try_get(0)?;
    Ok(ClusterStatus {
        host_id: host.to_owned(),
        lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        now_ms: now,
        hosts: hosts
            .iter()
            .map(|row| {
                Ok(HostStatus {
                    id: row.try_get(0)?,
                    address: row.try_get(1)?,
                    started_ms: row.try_get(2)?,
                    heartbeat_ms: row.try_get(3)?,
                    alive: row.try_get(4)?,
                    partitions: u32::try_from(row.try_get::<_, i64>(5)?).unwrap_or(u32::MAX),
                    work_items: u64::try_from(row.try_get::<_, i64>(6)?).unwrap_or(0),
                })
            })
            .collect::<Result<_, Error>>()?,
        partitions: partitions
            .iter()
            .map(|row| {
                Ok(PartitionStatus {
                    id: row.try_get(0)?,
                    owner: row.try_get(1)?,
                    epoch: row.try_get(2)?,
                    lease_until_ms: row.try_get(3)?,
                })
            })
            .collect::<Result<_, Error>>()?,
    })
}

/// Waits `period`; false once the cluster stops or is gone.
async fn pause(cluster: &std::sync::Weak<Cluster>, period: Duration) -> bool {
    let Some(mut stop) = cluster.upgrade().map(|c| c.stop.subscribe()) else {
        return false;
    };
    let stopped = tokio::select! {
        _ = tokio::time::sleep(period) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    };
    !stopped && !*stop.borrow()
}

/// Renews the leases every third of a lease.
async fn renew(cluster: std::sync::Weak<Cluster>) {
    loop {
        let Some(every) = cluster.upgrade().map(|c| c.renew_every) else {
            return;
        };
        if !pause(&cluster, every).await {
            return;
        }
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let mut leases = c.leases.lock().await;
        match leases.tick().await {
            Ok(changes) => c.apply(changes, leases.held()),
            Err(e) => tracing::warn!("cannot renew this host's partition leases: {e}"),
        }
    }
}

/// Tells whoever follows shared apps and keys to look again every
/// [`SHARED_POLL`], in case a notification was lost.
async fn look_again_at_shared(cluster: Weak<Cluster>) {
    while pause(&cluster, SHARED_POLL).await {
        if let Some(c) = cluster.upgrade() {
            c.shared.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Takes this host's wake-ups at every notification, and every `period`.
async fn poll(cluster: std::sync::Weak<Cluster>, pool: Pool, period: Duration) {
    loop {
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let mut stop = c.stop.subscribe();
        tokio::select! {
            _ = c.poke.notified() => {}
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let held: Vec<PartitionId> = read(&c.held).keys().copied().collect();
        if held.is_empty() {
            continue;
        }
        match take_wakeups(&pool, &held).await {
            Ok((instances, entities)) if instances.is_empty() && entities.is_empty() => {}
            Ok((instances, entities)) => {
                let _ = c.events.send(PlacementEvent::Wake {
                    instances,
                    entities,
                });
            }
            Err(e) => tracing::debug!("cannot take wake-ups (polled again): {e}"),
        }
    }
}

async fn take_wakeups(
    pool: &Pool,
    held: &[PartitionId],
) -> Result<(Vec<InstanceId>, Vec<EntityId>), StorageError> {
    let client = pool.get().await.map_err(pool_error)?;
    let take = client
        .prepare_cached("DELETE FROM wakeups WHERE partition = ANY($1) RETURNING kind, target")
        .await
        .map_err(pg_error)?;
    let rows = client.query(&take, &[&held]).await.map_err(pg_error)?;
    let (mut instances, mut entities) = (Vec::new(), Vec::new());
    for row in rows {
        let (kind, target): (String, String) = (
            row.try_get(0).map_err(pg_error)?,
            row.try_get(1).map_err(pg_error)?,
        );
        match kind.as_str() {
            "i" => instances.extend(InstanceId::parse(&target).ok()),
            _ => entities.extend(
                target
                    .split_once('@')
                    .and_then(|(name, key)| EntityId::parse(name, key).ok()),
            ),
        }
    }
    Ok((instances, entities))
}

/// Keeps a LISTEN connection: pokes the poller at every notification and
/// after every (re)connection, when notifications may have been missed.
async fn listen_for_wakeups(cluster: std::sync::Weak<Cluster>, config: tokio_postgres::Config) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&cluster, &config).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!("the wake-up listener lost its connection (polling meanwhile): {e}");
            }
        }
        if !pause(&cluster, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    cluster: &std::sync::Weak<Cluster>,
    config: &tokio_postgres::Config,
) -> Result<(), StorageError> {
    let (client, mut connection) = config
        .connect(crate::connect::tls())
        .await
        .map_err(pg_error)?;
    // `true`: shared apps or keys changed; `false`: wake-ups came.
    let poke = {
        let cluster = cluster.clone();
        move |shared: bool| {
            if let Some(c) = cluster.upgrade() {
                if shared {
                    c.shared.send_modify(|n| *n = n.wrapping_add(1));
                } else {
                    c.poke.notify_one();
                }
            }
        }
    };
    let on_message = poke.clone();
    let mut driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    on_message(n.channel() == SHARED_CHANNEL)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(pg_error(e)),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {SHARED_CHANNEL}"))
        .await
        .map_err(pg_error)?;
    // Whatever was notified while no listener was connected.
    poke(false);
    poke(true);
    let Some(mut stop) = cluster.upgrade().map(|c| c.stop.subscribe()) else {
        return Ok(());
    };
    tokio::select! {
        ended = &mut driver => ended.unwrap_or(Ok(())),
        _ = stop.wait_for(|stopped| *stopped) => {
            driver.abort();
            Ok(())
        }
    }
}
