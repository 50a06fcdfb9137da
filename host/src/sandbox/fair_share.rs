//! Fair shares of the sandbox between apps.
//!
//! tokio is fair between tasks, one poll each: a guest that computes runs a
//! whole epoch tick per poll, a small HTTP function some microseconds. Left
//! to that, an app with many busy invocations takes nearly all the CPU from
//! an app with many short ones. So every invocation is metered: the time it
//! computes (instantiation, guest code, the host work of its calls,
//! teardown; not its waits) is charged to its app. At the points where an
//! invocation may give way (its start, every epoch tick) it does so while
//! its app has used more than [`AHEAD`] beyond another app that computed in
//! the last [`ACTIVE_WINDOW`], in the manner of start-time fair queueing.
//!
//! Invariants:
//! - Work-conserving: giving way is yielding to tokio's run queue, and a
//!   yield that comes back at once ([`IDLE_YIELD`]) means nobody else was
//!   waiting to run, so the invocation goes on. An app alone, or next to
//!   apps that only want a little, is never slowed.
//! - No credit, no old debts: an app that starts computing again after a
//!   pause rejoins within [`AHEAD`] of the others, so an idle spell buys no
//!   burst that would starve them, and what it used long ago does not hold
//!   it back now.
//! - Bounded: one give-way lasts at most [`MAX_WAIT`]; it counts toward the
//!   invocation's wall-clock limit like any other time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far an app may be ahead of another before it gives way.
pub(crate) const AHEAD: Duration = Duration::from_millis(2);

/// An app that computed this recently competes for the CPU.
pub(crate) const ACTIVE_WINDOW: Duration = Duration::from_millis(20);

/// A yield that returns this fast found the run queue empty.
pub(crate) const IDLE_YIELD: Duration = Duration::from_micros(10);

/// Longest one give-way lasts.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(50);

/// Apps not seen for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The computing time of every app, in nanoseconds since `base`.
pub(crate) struct FairShare {
    base: Instant,
    usage: Mutex<Usage>,
}

#[derive(Default)]
struct Usage {
    apps: HashMap<Arc<str>, AppTime>,
    last_forget: u64,
}

#[derive(Clone, Copy)]
struct AppTime {
    /// Computing time charged, adjusted on rejoining (see the module doc).
    used: u64,
    /// When it was last charged.
    last: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Usage {
    /// The least time used by an app other than `app` active at `now`.
    fn least_other(&self, app: &str, now: u64) -> Option<u64> {
        let window = nanos(ACTIVE_WINDOW);
        self.apps
            .iter()
            .filter(|(name, t)| &***name != app && now.saturating_sub(t.last) <= window)
            .map(|(_, t)| t.used)
            .min()
    }
}

impl FairShare {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            usage: Mutex::default(),
        }
    }

    fn now(&self) -> u64 {
        nanos(self.base.elapsed())
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges `computed` nanoseconds to `app`.
    fn charge(&self, app: &Arc<str>, computed: u64) {
        self.charge_at(app, computed, self.now());
    }

    fn charge_at(&self, app: &Arc<str>, computed: u64, now: u64) {
        let mut usage = self.usage();
        // A new app counts as last charged at 0.
        let last = usage.apps.get(app).map_or(0, |t| t.last);
        let rejoining = now.saturating_sub(last) > nanos(ACTIVE_WINDOW);
        // Only a rejoining app needs the others' level.
        let least = if rejoining {
            usage.least_other(app, now)
        } else {
            None
        };
        let time = usage
            .apps
            .entry(app.clone())
            .or_insert(AppTime { used: 0, last: 0 });
        if let Some(least) = least {
            // Rejoining: within AHEAD of the others, whatever it used
            // before its pause.
            let ahead = nanos(AHEAD);
            time.used = time
                .used
                .clamp(least.saturating_sub(ahead), least.saturating_add(ahead));
        }
        time.used = time.used.saturating_add(computed);
        time.last = now;
        let forget = nanos(FORGET_AFTER);
        if now.saturating_sub(usage.last_forget) > forget {
            usage.last_forget = now;
            usage
                .apps
                .retain(|_, t| now.saturating_sub(t.last) <= forget);
        }
    }

    /// True if `app` has used more than [`AHEAD`] beyond an active app.
    pub(crate) fn ahead(&self, app: &str) -> bool {
        self.ahead_at(app, self.now())
    }

    fn ahead_at(&self, app: &str, now: u64) -> bool {
        let usage = self.usage();
        let Some(mine) = usage.apps.get(app) else {
            return false;
        };
        if now.saturating_sub(mine.last) > nanos(ACTIVE_WINDOW) {
            // Rejoining: it is charged from the others' level on.
            return false;
        }
        usage
            .least_other(app, now)
            .is_some_and(|least| mine.used > least.saturating_add(nanos(AHEAD)))
    }

    /// Gives way while `app` is ahead and other work is waiting to run
    /// (see the module doc); says why it stopped.
    pub(crate) async fn give_way(&self, app: &str) -> GaveWay {
        let started = Instant::now();
        loop {
            if !self.ahead(app) {
                return GaveWay::NotAhead;
            }
            if started.elapsed() >= MAX_WAIT {
                return GaveWay::TimedOut;
            }
            let yielded = Instant::now();
            tokio::task::yield_now().await;
            if yielded.elapsed() < IDLE_YIELD {
                return GaveWay::Idle;
            }
        }
    }
}

/// Why [`FairShare::give_way`] stopped giving way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GaveWay {
    /// The app was not (or no longer) ahead.
    NotAhead,
    /// Nothing else was waiting to run.
    Idle,
    /// [`MAX_WAIT`] passed.
    TimedOut,
}

/// One invocation's meter: charges the time it computes to its app.
/// Dropping it charges the time since the last charge.
pub(crate) struct Meter {
    share: Arc<FairShare>,
    app: Arc<str>,
    /// When the current computing spell began, in the share's nanoseconds
    /// plus one; 0 while the invocation waits.
    since: Arc<AtomicU64>,
}

impl Meter {
    /// A meter running from now.
    pub(crate) fn start(share: Arc<FairShare>, app: Arc<str>) -> Self {
        let since = Arc::new(AtomicU64::new(share.now() + 1));
        Self { share, app, since }
    }

    /// The invocation stops computing (it waits): charges the spell.
    pub(crate) fn pause(&self) {
        pause(&self.share, &self.app, &self.since);
    }

    /// The invocation computes again.
    pub(crate) fn resume(&self) {
        let _ = self.since.compare_exchange(
            0,
            self.share.now() + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// At an epoch tick: charges the spell, runs `turn` (a yield, or a wait
    /// for a long lane), gives way if the app is ahead, then computes on.
    pub(crate) fn next_slice(
        &self,
        turn: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.pause();
        let (share, app, since) = (self.share.clone(), self.app.clone(), self.since.clone());
        async move {
            share.give_way(&app).await;
            turn.await;
            since.store(share.now() + 1, Ordering::Relaxed);
        }
    }
}

fn pause(share: &FairShare, app: &Arc<str>, since: &AtomicU64) {
    let began = since.swap(0, Ordering::Relaxed);
    if began != 0 {
        share.charge(app, share.now().saturating_sub(began - 1));
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn app(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn an_app_alone_is_never_ahead() {
        let share = FairShare::new();
        share.charge_at(&app("a"), 5_000 * MS, 10 * MS);
        assert!(!share.ahead_at("a", 10 * MS));
    }

    #[test]
    fn an_app_past_an_active_one_by_more_than_ahead_gives_way() {
        let share = FairShare::new();
        let now = 100 * MS;
        share.charge_at(&app("light"), MS, now);
        share.charge_at(&app("heavy"), MS + nanos(AHEAD), now);
        assert!(!share.ahead_at("heavy", now), "ahead by AHEAD exactly");
        share.charge_at(&app("heavy"), 1, now);
        assert!(share.ahead_at("heavy", now));
        assert!(!share.ahead_at("light", now));
        // The light app catches up.
        share.charge_at(&app("light"), 1, now);
        assert!(!share.ahead_at("heavy", now));
    }

    #[test]
    fn an_app_gone_quiet_holds_nobody_back() {
        let share = FairShare::new();
        share.charge_at(&app("light"), MS, 100 * MS);
        share.charge_at(&app("heavy"), 50 * MS, 100 * MS);
        assert!(share.ahead_at("heavy", 100 * MS));
        let later = 100 * MS + nanos(ACTIVE_WINDOW) + 1;
        assert!(!share.ahead_at("heavy", later));
    }

    #[test]
    fn a_rejoining_app_starts_just_behind_the_others() {
        let share = FairShare::new();
        share.charge_at(&app("quiet"), MS, MS);
        // "busy" computes for ten seconds while "quiet" is idle.
        let now = 10_000 * MS;
        share.charge_at(&app("busy"), 10_000 * MS, now);
        // Rejoining with its own, far lower time would let "quiet" take
        // the CPU for ten seconds; it joins AHEAD behind instead.
        share.charge_at(&app("quiet"), MS, now);
        assert!(!share.ahead_at("quiet", now));
        assert!(!share.ahead_at("busy", now));
        share.charge_at(&app("busy"), MS + 1, now);
        assert!(share.ahead_at("busy", now));
    }

    #[test]
    fn a_rejoining_app_is_not_held_to_old_debts() {
        let share = FairShare::new();
        // "early" computed for ten seconds, then paused; "late" started.
        share.charge_at(&app("early"), 10_000 * MS, 10_000 * MS);
        let now = 20_000 * MS;
        share.charge_at(&app("late"), MS, now);
        share.charge_at(&app("early"), MS, now);
        assert!(share.ahead_at("early", now));
        // "late" catches up in milliseconds, not ten seconds.
        share.charge_at(&app("late"), 2 * MS + nanos(AHEAD), now);
        assert!(!share.ahead_at("early", now));
    }

    #[test]
    fn apps_long_gone_are_forgotten() {
        let share = FairShare::new();
        share.charge_at(&app("gone"), MS, MS);
        share.charge_at(&app("here"), MS, MS + nanos(FORGET_AFTER) + 2);
        assert!(!share.usage().apps.contains_key("gone"));
        assert!(share.usage().apps.contains_key("here"));
    }

    #[tokio::test]
    async fn giving_way_with_nothing_else_to_run_goes_on() {
        let share = FairShare::new();
        share.charge(&app("light"), 0);
        share.charge(&app("heavy"), 1_000 * MS);
        assert!(share.ahead("heavy"));
        // A current-thread runtime with no other task: the yield comes
        // straight back.
        assert_ne!(share.give_way("heavy").await, GaveWay::TimedOut);
        assert_eq!(share.give_way("light").await, GaveWay::NotAhead);
    }

    #[test]
    fn a_meter_charges_its_spells_but_not_its_waits() {
        let share = Arc::new(FairShare::new());
        let meter = Meter::start(share.clone(), app("a"));
        meter.pause();
        let charged = share.usage().apps.get("a").map(|t| t.used);
        assert!(charged.is_some());
        // Paused: pausing again or dropping charges nothing more.
        meter.pause();
        drop(meter);
        assert_eq!(share.usage().apps.get("a").map(|t| t.used), charged);
    }
}
