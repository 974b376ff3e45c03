//! Where the module under test, the second test module and the server binary are.

use std::path::PathBuf;

/// A second module with a data type of its own (tests/modules/othertype), built beside the
/// module under test: `librlock_test_othertype.so` in the same directory.
pub fn other_module_path() -> PathBuf {
    let path = module_path().with_file_name("librlock_test_othertype.so");
    if !path.is_file() {
        panic!(
            "the test module is missing at {}: run `make build` (or `cargo build --release -p \
             rlock-test-othertype`) first",
            path.display()
        );
    }
    path
}

/// The module under test: `RLOCK_MODULE`, else `target/release/librlock.so` of this repo.
pub fn module_path() -> PathBuf {
    let path = match std::env::var_os("RLOCK_MODULE") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join("target/release/librlock.so"),
    };
    let path = if path.is_absolute() {
        path
    } else {
        repo_root().join(path)
    };
    if !path.is_file() {
        panic!(
            "the rlock module is missing at {}: run `make test` (or `cargo build --release -p rlock`) \
             first, or point RLOCK_MODULE at a built librlock.so",
            path.display()
        );
    }
    path
}

/// The server binary under test: `RLOCK_SERVER` (a path, or a name on PATH), else
/// `redis-server`. `make test` points it at each server version it tests (see the README).
pub fn server_binary() -> PathBuf {
    std::env::var_os("RLOCK_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
