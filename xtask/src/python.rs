//! Python function apps, built with componentize-py.
//!
//! The toolchain is pinned ([`COMPONENTIZE_PY`]) and installed from PyPI
//! into `target/toolchains/python` (a virtual environment) on first use,
//! with the machine's `python3` (3.10 or newer). A machine without python3
//! builds everything else and says what it skipped.
//!
//! A build takes 10-20 s, so each app is rebuilt only when its inputs
//! change: the WIT, the SDK, the app's own files and the pin are hashed
//! into a stamp beside the component.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Guest;

/// The componentize-py release the Python apps are built with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Why a Python app was not built.
#[derive(Debug)]
pub enum PythonError {
    /// No usable python3 on this machine: nothing was attempted.
    Unavailable(String),
    /// The toolchain or the build failed.
    Failed(String),
}

impl std::fmt::Display for PythonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "Python apps skipped: {why}"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// The repository's toolchains folder (ignored by git).
fn toolchains(root: &Path) -> PathBuf {
    root.join("target/toolchains")
}

/// The `componentize-py` executable, installed if missing.
pub fn componentize_py(root: &Path) -> Result<PathBuf, PythonError> {
    let venv = toolchains(root).join("python");
    let exe = venv.join("bin/componentize-py");
    let pin_file = venv.join("perdure-pin");
    if exe.is_file() && std::fs::read_to_string(&pin_file).is_ok_and(|p| p == COMPONENTIZE_PY) {
        return Ok(exe);
    }
    let python = find_python()?;
    if !venv.join("bin/pip").is_file() {
        run(
            Command::new(&python).arg("-m").arg("venv").arg(&venv),
            "create a Python virtual environment (on Debian: apt install python3-venv)",
        )?;
    }
    eprintln!(
        "xtask: installing {COMPONENTIZE_PY} from PyPI into {}",
        venv.display()
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(COMPONENTIZE_PY),
        "install componentize-py",
    )?;
    std::fs::write(&pin_file, COMPONENTIZE_PY)
        .map_err(|e| PythonError::Failed(format!("cannot write {}: {e}", pin_file.display())))?;
    Ok(exe)
}

/// A python3 of version 3.10 or newer.
fn find_python() -> Result<String, PythonError> {
    let python = std::env::var("PERDURE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-c", "import sys; print(sys.version_info >= (3, 10))"])
        .output()
        .map_err(|e| PythonError::Unavailable(format!("cannot run {python}: {e}")))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => Ok(python),
        _ => Err(PythonError::Unavailable(format!(
            "{python} is older than 3.10 or does not run"
        ))),
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), PythonError> {
    let status = cmd
        .status()
        .map_err(|e| PythonError::Failed(format!("cannot {what}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(PythonError::Failed(format!("cannot {what}: {status}")))
    }
}

/// The fixed-entropy library preloaded into builds (see
/// `fixed_entropy.c`), compiled with the machine's C compiler; `None` (with
/// a warning) without one: builds then differ in their hash seed.
fn fixed_entropy(root: &Path) -> Option<PathBuf> {
    let dir = toolchains(root);
    let source = dir.join("fixed-entropy.c");
    let library = dir.join("fixed-entropy.so");
    let text = include_str!("fixed_entropy.c");
    if library.is_file() && std::fs::read_to_string(&source).is_ok_and(|s| s == text) {
        return Some(library);
    }
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(&source, text).ok()?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .status();
    if built.is_ok_and(|s| s.success()) {
        Some(library)
    } else {
        eprintln!(
            "xtask: warning: no C compiler ({cc}): Python builds get a random hash seed, \
             so two builds of one source may replay each other's orchestrations differently"
        );
        None
    }
}

/// Builds the Python app in `app_dir` (a module `app.py` that defines
/// `App`, with `guest-sdk-python/` on its path) into
/// `target/guests/python/<name>.wasm`, unless its inputs are unchanged.
pub fn build_python_app(root: &Path, app_dir: &Path, name: &str) -> Result<Guest, PythonError> {
    let tool = componentize_py(root)?;
    let sdk = root.join("guest-sdk-python");
    let wit = root.join("wit");
    let out_dir = root.join("target/guests/python");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| PythonError::Failed(format!("cannot create {}: {e}", out_dir.display())))?;
    let wasm = out_dir.join(format!("{name}.wasm"));
    let stamp_file = out_dir.join(format!("{name}.inputs"));
    let preload = fixed_entropy(root);
    let stamp = format!(
        "{COMPONENTIZE_PY} fixed-entropy={} {:016x}",
        preload.is_some(),
        hash_tree(&[&wit, &sdk, app_dir])
    );
    if wasm.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(Guest {
            name: name.to_owned(),
            wasm,
        });
    }
    let tmp = out_dir.join(format!("{name}.wasm.tmp"));
    let mut cmd = Command::new(&tool);
    cmd.arg("--quiet")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "function-app", "componentize"])
        .arg("-p")
        .arg(&sdk)
        .arg("-p")
        .arg(app_dir)
        .arg("app")
        .arg("-o")
        .arg(&tmp)
        // Only the paths given: not componentize-py's own packages.
        .env_remove("VIRTUAL_ENV");
    if let Some(library) = &preload {
        cmd.env("LD_PRELOAD", library);
    }
    run(
        &mut cmd,
        &format!("build the Python app {}", app_dir.display()),
    )?;
    std::fs::rename(&tmp, &wasm)
        .map_err(|e| PythonError::Failed(format!("cannot move into {}: {e}", wasm.display())))?;
    std::fs::write(&stamp_file, stamp)
        .map_err(|e| PythonError::Failed(format!("cannot write {}: {e}", stamp_file.display())))?;
    Ok(Guest {
        name: name.to_owned(),
        wasm,
    })
}

/// A hash of the paths and contents of every file under `dirs` (bytecode
/// caches left out), in a fixed order.
fn hash_tree(dirs: &[&Path]) -> u64 {
    let mut files = Vec::new();
    for dir in dirs {
        collect_files(dir, &mut files);
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        hasher.write(file.to_string_lossy().as_bytes());
        hasher.write(&std::fs::read(&file).unwrap_or_default());
    }
    hasher.finish()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}
