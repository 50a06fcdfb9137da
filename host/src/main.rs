//! The `perdure` binary; see [`perdure::cli`].

fn main() -> anyhow::Result<()> {
    perdure::cli::run()
}
