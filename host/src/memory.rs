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

/// `mi_option_arena_eager_commit` in mimalloc v3.3's `mimalloc.h` (the
/// release `libmimalloc-sys` 0.1.49 builds; the crate does not export it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in the same header.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc, the allocator of the `perdure` binary (re-exported for
/// [`perdure_allocator!`](crate::perdure_allocator)).
pub use mimalloc::MiMalloc;

/// Tunes mimalloc for a host that stays up: arenas are committed as they
/// are used rather than when they are reserved, and freed memory goes back
/// to the system after 10 ms. With mimalloc's defaults, 10,000 evicted
/// waiting instances left the process at 148-165 MiB RSS (95 MiB before
/// they started); with these, 62-83 MiB (durable bench, `memory`).
/// `MIMALLOC_*` variables set by the operator win.
///
/// mimalloc reads these options when it first reserves memory, which
/// happens before `main` (set from `Host::start`, they left 97-121 MiB), so
/// this runs as a load-time constructor:
/// [`perdure_allocator!`](crate::perdure_allocator) registers it in
/// `.init_array`.
pub extern "C" fn tune_allocator() {
    // SAFETY: mi_option_set_default only records a tuning value for an
    // option the operator has not set; both options are read by mimalloc
    // whenever it reserves or purges memory. It is not thread safe against
    // itself: it runs once, from the loader, before any thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 10);
    }
}

/// Makes tuned mimalloc the binary's allocator, as the `perdure` binary
/// has it: under load, buffers allocated on one worker thread and freed on
/// another made glibc's `malloc`/`free` a tenth of the host's CPU time,
/// with arena-lock wake-ups on top (measured with `perf` on the foundation
/// bench; end-to-end greet throughput rose by about 9%, the durable
/// bench's hello chains from 7.3-7.9k to 10.1-10.2k activities/s).
#[macro_export]
macro_rules! perdure_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::memory::MiMalloc = $crate::memory::MiMalloc;

        /// Tunes the allocator before its first allocation.
        #[used]
        #[unsafe(link_section = ".init_array")]
        static TUNE_ALLOCATOR: extern "C" fn() = $crate::memory::tune_allocator;
    };
}

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
