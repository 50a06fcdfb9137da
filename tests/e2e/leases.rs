//! Partition leases on a real PostgreSQL: hosts split the partitions
//! fairly, a dead host's are taken over once its lease runs out (and not
//! before), a graceful release hands over at once, and the epoch fences a
//! host that lost its partitions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use perdure_postgres::lease::{Leases, PartitionId, fence};
use perdure_tests::postgres;

const LEASE: Duration = Duration::from_millis(1500);
const DEADLINE: Duration = Duration::from_secs(20);

async fn host(url: &str, id: &str) -> anyhow::Result<Leases> {
    Ok(Leases::connect(url, id.into(), "127.0.0.1:0", LEASE).await?)
}

fn held(leases: &Leases) -> BTreeSet<PartitionId> {
    leases.held().keys().copied().collect()
}

/// Ticks `leases` every third of a lease until it holds `count`
/// partitions; returns how long that took.
async fn tick_until_holding(leases: &mut Leases, count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        leases.tick().await?;
        if leases.held().len() == count {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < DEADLINE,
            "{} holds {} partitions, not {count}, after {DEADLINE:?}",
            leases.host(),
            leases.held().len()
        );
        tokio::time::sleep(leases.renew_every()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_split_the_partitions_and_take_over_a_dead_ones_after_its_lease() -> anyhow::Result<()>
{
    let Some(db) = postgres::database().await? else {
        return Ok(());
    };
    let mut a = host(db.url(), "a").await?;
    let gained = a.tick().await?.gained;
    assert_eq!(gained.len(), 64, "alone, a host takes every partition");
    assert!(gained.iter().all(|(_, epoch)| *epoch == 1), "{gained:?}");

    let mut b = host(db.url(), "b").await?;
    assert!(b.tick().await?.gained.is_empty(), "nothing is free yet");
    // a's last renewal: it is taken for dead from here.
    let last_renewal = Instant::now();
    let lost = a.tick().await?.lost;
    assert_eq!(lost.len(), 32, "a gives back what is beyond its fair share");
    let gained = b.tick().await?.gained;
    assert_eq!(gained.len(), 32, "b takes its fair share");
    assert!(held(&a).is_disjoint(&held(&b)));
    assert_eq!(
        held(&a).union(&held(&b)).count(),
        64,
        "every partition has an owner"
    );
    assert!(
        gained.iter().all(|(_, epoch)| *epoch == 2),
        "taking bumps the epoch: {gained:?}"
    );

    // a dies: it renews nothing more. b takes a's share once a's lease
    // (and heartbeat) ran out, not before.
    let a_partition = *held(&a)
        .first()
        .ok_or_else(|| anyhow::anyhow!("a holds nothing"))?;
    let a_epoch = a.held()[&a_partition];
    let took = tick_until_holding(&mut b, 64).await?;
    let since_renewal = last_renewal.elapsed();
    assert!(
        since_renewal >= LEASE,
        "taken over {since_renewal:?} after a's last renewal, before its {LEASE:?} lease ran out"
    );
    eprintln!("takeover {took:?} after a's last renewal (lease {LEASE:?})");
    assert!(b.held()[&a_partition] > a_epoch, "a new epoch");

    // A write a would make now is refused by the epoch.
    let mut client = db.connect().await?;
    let tx = client.transaction().await?;
    let refused = fence(&tx, a_partition, a_epoch).await?;
    assert!(refused.is_err(), "a's late write is fenced: {refused:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_holds_off_the_takeover_of_its_partition() -> anyhow::Result<()> {
    let Some(db) = postgres::database().await? else {
        return Ok(());
    };
    let mut a = host(db.url(), "a").await?;
    a.tick().await?;
    let (partition, epoch) = a
        .held()
        .iter()
        .next()
        .map(|(p, e)| (*p, *e))
        .ok_or_else(|| anyhow::anyhow!("a holds nothing"))?;
    // a's write checks the fence and is still running...
    let mut writer = db.connect().await?;
    let write = writer.transaction().await?;
    assert_eq!(fence(&write, partition, epoch).await?, Ok(()));
    // ...while a's lease runs out and b takes everything it can.
    let mut b = host(db.url(), "b").await?;
    tick_until_holding(&mut b, 63).await?;
    assert!(
        !b.held().contains_key(&partition),
        "a partition whose write is in flight is not taken"
    );
    write.commit().await?;
    tick_until_holding(&mut b, 64).await?;
    let mut late = db.connect().await?;
    let late = late.transaction().await?;
    assert!(
        fence(&late, partition, epoch).await?.is_err(),
        "after the takeover, a's next write is refused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_release_hands_over_at_once() -> anyhow::Result<()> {
    let Some(db) = postgres::database().await? else {
        return Ok(());
    };
    let mut a = host(db.url(), "a").await?;
    a.tick().await?;
    let mut b = host(db.url(), "b").await?;
    a.release_all().await?;
    let gained = b.tick().await?.gained;
    assert_eq!(
        gained.len(),
        64,
        "taken at b's next tick, not after a lease"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restarted_under_its_id_takes_its_partitions_anew() -> anyhow::Result<()> {
    let Some(db) = postgres::database().await? else {
        return Ok(());
    };
    let mut before = host(db.url(), "a").await?;
    before.tick().await?;
    // The process dies without releasing; it comes back under the same id.
    drop(before);
    let mut after = host(db.url(), "a").await?;
    let gained = after.tick().await?.gained;
    assert_eq!(gained.len(), 64, "{gained:?}");
    assert!(
        gained.iter().all(|(_, epoch)| *epoch == 2),
        "taken anew with a new epoch, not renewed under the old one: {gained:?}"
    );
    Ok(())
}
