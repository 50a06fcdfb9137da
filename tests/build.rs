//! Builds the example apps and the test guests for wasm32-wasip2 and writes
//! `guests.rs`: one constant per component with the path of its `.wasm`.
//! The nested cargo builds use `target/guests`, never the outer build's
//! target directory (see xtask's docs on the lock).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = xtask::repo_root();
    for watched in [
        "wit",
        "guest-sdk",
        "examples-wasm",
        "tests/guests",
        "guest-sdk-python",
        "examples-python",
        "tests/guests-python",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    if let Err(e) = xtask::ensure_guest_target() {
        panic!("{e}");
    }
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    let target_dir = root.join("target/guests");
    let mut consts = String::new();
    for workspace in ["examples-wasm", "tests/guests"] {
        let manifest = root.join(workspace).join("Cargo.toml");
        let guests =
            xtask::build_guests(&cargo, &manifest, &target_dir).unwrap_or_else(|e| panic!("{e}"));
        for guest in guests {
            let _ = writeln!(
                consts,
                "/// `{}` built from `{workspace}/`.\npub const {}: &str = {:?};",
                guest.name,
                guest.name.to_uppercase(),
                guest.wasm.display().to_string()
            );
        }
    }
    // Python apps: `None` (with the reason) on a machine without python3;
    // the tests that need them fail or skip as PERDURE_REQUIRE_PYTHON says.
    for (name, dir) in [
        ("py_examples", "examples-python"),
        ("py_guests", "tests/guests-python"),
        // A second build of the same source: the upgrade test's "v2".
        ("py_guests_rebuilt", "tests/guests-python"),
    ] {
        let built = xtask::build_python_app(&root, &root.join(dir), name);
        let value = match built {
            Ok(guest) => format!("Ok({:?})", guest.wasm.display().to_string()),
            Err(xtask::PythonError::Unavailable(why)) => format!("Err({why:?})"),
            Err(xtask::PythonError::Failed(e)) => panic!("{e}"),
        };
        let _ = writeln!(
            consts,
            "/// `{name}` built from `{dir}/` with componentize-py, or why not.\n\
             pub const {}: Result<&str, &str> = {value};",
            name.to_uppercase()
        );
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("guests.rs"), consts).expect("cannot write guests.rs");
}
