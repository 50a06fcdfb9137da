//! The `perdure` binary; see [`perdure::cli`].

/// mimalloc rather than the system allocator: under load, buffers
/// allocated on one worker thread and freed on another made glibc's
/// `malloc`/`free` a tenth of the host's CPU time, with arena-lock
/// wake-ups on top (measured with `perf` on the foundation bench; with
/// mimalloc the end-to-end greet throughput rose by about 9%).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tunes mimalloc before its first allocation (see
/// [`perdure::memory::tune_allocator`]).
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = perdure::memory::tune_allocator_at_load;

fn main() -> anyhow::Result<()> {
    perdure::cli::run()
}
