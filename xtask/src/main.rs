//! `cargo xtask`: developer tasks.
//!
//! - `cargo xtask build`: builds the host and the example apps, and copies
//!   each example's component to `functions/<name>.wasm`: the Rust ones
//!   from `examples-wasm/`, and the Python app from `examples-python/`
//!   (skipped, with a message, on a machine without python3).
//! - `cargo xtask serve [ARGS...]`: the same, then runs `perdure serve
//!   --functions functions ARGS...`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use xtask::{PythonError, build_guests, build_python_app, ensure_guest_target, repo_root};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("build") => build().map(|_| ()),
        Some("serve") => build().and_then(|perdure| serve(&perdure, &rest)),
        _ => {
            eprintln!("usage: cargo xtask build | serve [perdure serve options]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// Builds everything; returns the path of the `perdure` binary.
fn build() -> Result<PathBuf, String> {
    let root = repo_root();
    ensure_guest_target()?;
    let guests = build_guests(
        &cargo(),
        &root.join("examples-wasm/Cargo.toml"),
        &root.join("target/guests"),
    )?;
    let functions = root.join("functions");
    std::fs::create_dir_all(&functions)
        .map_err(|e| format!("cannot create {}: {e}", functions.display()))?;
    for guest in &guests {
        let dest = functions.join(format!("{}.wasm", guest.name.replace('_', "-")));
        copy_atomically(&guest.wasm, &dest)?;
        println!("built {}", dest.display());
    }
    match build_python_app(&root, &root.join("examples-python"), "py_examples") {
        Ok(guest) => {
            let dest = functions.join("py-examples.wasm");
            copy_atomically(&guest.wasm, &dest)?;
            println!("built {}", dest.display());
        }
        Err(skipped @ PythonError::Unavailable(_)) => eprintln!("xtask: {skipped}"),
        Err(PythonError::Failed(e)) => return Err(e),
    }
    let status = Command::new(cargo())
        .args(["build", "--release", "--package", "perdure"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building perdure failed".into());
    }
    Ok(root.join("target/release/perdure"))
}

/// Copies through a temporary file and a rename, so a running host never
/// sees a half-written component.
fn copy_atomically(from: &Path, to: &Path) -> Result<(), String> {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| format!("cannot move into {}: {e}", to.display()))
}

fn serve(perdure: &Path, args: &[String]) -> Result<(), String> {
    let root = repo_root();
    let status = Command::new(perdure)
        .arg("serve")
        .arg("--functions")
        .arg(root.join("functions"))
        .arg("--db")
        .arg(root.join("perdure.db"))
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", perdure.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("perdure exited with {status}"))
    }
}
