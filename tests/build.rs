//! Builds the example apps and the test guests for wasm32-wasip2 and writes
//! `guests.rs`: one constant per component with the path of its `.wasm`.
//! The nested cargo builds use `target/guests`, never the outer build's
//! target directory (see xtask's docs on the lock).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = xtask::repo_root();
    for watched in ["wit", "guest-sdk", "examples-wasm", "tests/guests"] {
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
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("guests.rs"), consts).expect("cannot write guests.rs");
}
