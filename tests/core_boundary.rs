//! The pure core's purity is its crate boundary: `opsguard-core` cannot
//! name an async runtime, a Docker client or an HTTP stack because none is
//! among its dependencies. This keeps it that way: a dependency added to
//! the core, directly or through another crate, that brings one in fails
//! here. (The core's `clippy.toml` covers the standard library's clocks,
//! files, sockets and processes.)

use std::process::Command;

/// Crates that do IO or own time; none may be built into the core.
const FORBIDDEN: &[&str] =
    &["tokio", "bollard", "reqwest", "hyper", "hyper-util", "axum", "mio", "futures-util", "async-std", "socket2"];

#[test]
fn the_core_depends_on_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "opsguard-core", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .args(["--offline", "--locked", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"opsguard-core") && crates.contains(&"regex"), "unexpected tree:\n{tree}");
    let found: Vec<&&str> = crates.iter().filter(|c| FORBIDDEN.contains(c)).collect();
    assert!(found.is_empty(), "the core depends on {found:?}:\n{tree}");
}
