//! The `perdure` command line, built inside the test package so that tests
//! can run the real binary as a child process (and SIGKILL it).

fn main() -> anyhow::Result<()> {
    perdure::cli::run()
}
