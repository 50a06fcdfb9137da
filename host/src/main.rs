//! The `perdure` binary; see [`perdure::cli`].

perdure::perdure_allocator!();

fn main() -> anyhow::Result<()> {
    perdure::cli::run()
}
