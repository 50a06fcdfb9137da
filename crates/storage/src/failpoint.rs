//! Crash points for the crash-point harness (`tests/e2e/crash_points.rs`).
//!
//! Compiled in only with the `failpoints` feature, which only the test
//! crate enables; in the `perdure` binary `hit` is empty. With it,
//! `PERDURE_FAILPOINT=before-commit:N` (or `after-commit:N`) aborts the
//! process, with no cleanup at all, when its writer reaches the N-th
//! commit of a batch: just before SQLite's `COMMIT`, or just after it and
//! before anyone is told. `after-ms:N` aborts N ms after start, wherever
//! the host is then.

/// Where the writer may be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    BeforeCommit,
    AfterCommit,
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::Point;

    enum Plan {
        At(Point, u64),
        AfterMs(u64),
    }

    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    /// Passes of the one point the plan arms.
    static PASSES: AtomicU64 = AtomicU64::new(0);

    fn plan() -> &'static Option<Plan> {
        PLAN.get_or_init(|| {
            let spec = std::env::var("PERDURE_FAILPOINT").ok()?;
            let (kind, n) = spec.split_once(':')?;
            let n: u64 = n.parse().ok()?;
            match kind {
                "before-commit" => Some(Plan::At(Point::BeforeCommit, n)),
                "after-commit" => Some(Plan::At(Point::AfterCommit, n)),
                "after-ms" => Some(Plan::AfterMs(n)),
                _ => None,
            }
        })
    }

    pub(super) fn arm() {
        if let Some(Plan::AfterMs(ms)) = plan() {
            let ms = *ms;
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                eprintln!("failpoint after-ms:{ms}: aborting");
                std::process::abort();
            });
        }
    }

    pub(super) fn hit(point: Point) {
        let Some(Plan::At(armed, n)) = plan() else {
            return;
        };
        if *armed != point {
            return;
        }
        if PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("failpoint {point:?}:{n}: aborting");
            std::process::abort();
        }
    }
}

/// Starts a timed crash point, if one is set. Call once at start-up.
#[inline]
pub fn arm() {
    #[cfg(feature = "failpoints")]
    armed::arm();
}

/// Passes `point`; aborts the process here if the plan says so.
#[inline]
pub fn hit(point: Point) {
    #[cfg(feature = "failpoints")]
    armed::hit(point);
    #[cfg(not(feature = "failpoints"))]
    let _ = point;
}
