//! Process-wide memory tuning.
//!
//! glibc's malloc gives threads up to eight arenas per core. The host's
//! threads (tokio workers, the blocking pool that runs SQLite reads and
//! compilation, the database writer) each end up with one, and every arena
//! keeps the memory freed into it. After a burst (10,000 instances started
//! and evicted) that retained memory was most of the process's RSS:
//! measured with the durable bench, 107 MiB with the default and 72 MiB
//! with `MALLOC_ARENA_MAX=2` on a 2-core machine. Small allocations are
//! served from per-thread caches without touching an arena's lock, so
//! fewer arenas cost little.

/// Caps malloc's arenas at the number of cores (at least 2), unless the
/// operator chose a value with `MALLOC_ARENA_MAX`. Call early, before many
/// threads exist: threads that already have an arena keep it. Does
/// nothing on platforms without glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
                return;
            }
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
            // SAFETY: mallopt only sets a tuning parameter of glibc's
            // allocator, under the allocator's own lock; M_ARENA_MAX is one
            // glibc accepts at any time, and it only limits arenas created
            // from now on.
            let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
            if set != 1 {
                tracing::debug!("mallopt(M_ARENA_MAX, {arenas}) was refused");
            }
        });
    }
}
