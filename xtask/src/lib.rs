//! Building guest components: shared by `cargo xtask` and the test suite's
//! build script, so both build the examples the same way.
//!
//! Guests build for `wasm32-wasip2` in workspaces of their own
//! (`examples-wasm/`, `tests/guests/`), each with a target directory of its
//! own: a nested cargo that shared the outer build's target directory would
//! wait forever on its lock.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod python;

pub use python::{PythonError, build_python_app};

/// The wasm target guests build for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Environment a nested cargo must not inherit: they would point it at the
/// outer build's target directory, flags or wrapper (clippy sets one).
const OUTER_BUILD_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

/// A built component.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The crate name with `-` turned into `_`, e.g. `greet`.
    pub name: String,
    pub wasm: PathBuf,
}

/// Installs the wasm target with rustup if it is missing. Without rustup
/// (a distro toolchain) the build that follows says what is missing.
pub fn ensure_guest_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == GUEST_TARGET)
            {
                return Ok(());
            }
            let status = Command::new("rustup")
                .args(["target", "add", GUEST_TARGET])
                .status()
                .map_err(|e| format!("cannot run rustup: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("`rustup target add {GUEST_TARGET}` failed"))
            }
        }
        _ => Ok(()),
    }
}

/// Builds every member of the guest workspace at `manifest` in release mode
/// into `target_dir` and returns the components, sorted by name.
pub fn build_guests(
    cargo: &Path,
    manifest: &Path,
    target_dir: &Path,
) -> Result<Vec<Guest>, String> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--workspace",
        "--target",
        GUEST_TARGET,
    ])
    .arg("--manifest-path")
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    for var in OUTER_BUILD_VARS {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !status.success() {
        return Err(format!(
            "building the guests of {} failed",
            manifest.display()
        ));
    }
    let out_dir = target_dir.join(GUEST_TARGET).join("release");
    let members = workspace_members(manifest)?;
    let mut guests = Vec::new();
    for member in members {
        let name = member.replace('-', "_");
        let wasm = out_dir.join(format!("{name}.wasm"));
        if !wasm.is_file() {
            return Err(format!("{} was not built", wasm.display()));
        }
        guests.push(Guest { name, wasm });
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

/// The package names of a guest workspace's members (each member is a
/// directory with a Cargo.toml whose `name = "..."` line names it).
fn workspace_members(manifest: &Path) -> Result<Vec<String>, String> {
    let root = manifest.parent().unwrap_or(Path::new("."));
    let mut names = Vec::new();
    let entries =
        std::fs::read_dir(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    for entry in entries.flatten() {
        let member_manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&member_manifest) else {
            continue;
        };
        let name = text.lines().find_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("name")?
                .trim_start()
                .strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_owned())
        });
        if let Some(name) = name {
            names.push(name);
        }
    }
    Ok(names)
}

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
