//! The timer task: one task fires every durable timer.
//!
//! Pending timers are rows (see `storage::tasks`); the task asks storage
//! for the earliest, sleeps until it is due or until a commit sets an
//! earlier one, fires the due batch in one write and applies its effects.
//! Thousands of pending timers cost rows, not tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::engine::Shared;
use crate::time::now_ms;

/// Pause after a storage error before the timer task tries again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What the timer task sleeps until, and how to wake it early.
#[derive(Debug)]
pub(crate) struct TimerClock {
    /// The due time the task sleeps until (`i64::MAX`: no timer).
    sleeping_until: AtomicI64,
    wake: Notify,
    stopped: AtomicBool,
}

impl Default for TimerClock {
    fn default() -> Self {
        Self {
            sleeping_until: AtomicI64::new(i64::MAX),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        }
    }
}

impl TimerClock {
    /// A timer due at `at_ms` was committed: wake the task if it sleeps
    /// past it, or if it is awake (it may have queried before this commit;
    /// [`Notify`] keeps the wake-up for its next sleep).
    pub(crate) fn schedule(&self, at_ms: i64) {
        if at_ms < self.sleeping_until.load(Ordering::SeqCst) {
            self.sleeping_until.store(at_ms, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Fires timers until the engine stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let clock = &shared.timers;
    while !clock.stopped.load(Ordering::SeqCst) {
        // Awake: any timer committed from here on wakes the next sleep at
        // once, so one committed after the query below is not missed.
        clock.sleeping_until.store(i64::MAX, Ordering::SeqCst);
        let next = match shared.storage().next_timer_due().await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("cannot read the next timer: {e}");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let now = now_ms();
        if let Some(due) = next
            && due <= now
        {
            match shared.storage().fire_timers(now, shared.lease_ms()).await {
                Ok(effects) => shared.apply(effects),
                Err(e) => {
                    shared.write_failed(&e);
                    tracing::error!("cannot fire timers: {e}");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            continue;
        }
        let until = next.unwrap_or(i64::MAX);
        clock.sleeping_until.store(until, Ordering::SeqCst);
        let wait = Duration::from_millis(u64::try_from(until - now).unwrap_or(u64::MAX));
        // Sleeping at most a day keeps far-off deadlines within tokio's
        // timer range.
        let wait = wait.min(Duration::from_secs(86_400));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = clock.wake.notified() => {}
        }
    }
}
