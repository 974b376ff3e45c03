//! A temp dir per server, named after the test process, so that the dirs of a test process
//! that was killed before its guards could clean up are removed by the next one.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use super::process::process_alive;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

const TEMP_PREFIX: &str = "rlock-test-";

/// Removes the temp dirs of test processes that are gone (killed before their guards could
/// clean up). A dir is named after its process: a running process' dirs are never touched.
pub fn remove_stale_temp_dirs() {
    remove_stale_temp_dirs_in(&std::env::temp_dir());
}

/// As `remove_stale_temp_dirs`, in `root` instead of the system's temp dir.
pub fn remove_stale_temp_dirs_in(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub(super) fn make_temp_dir() -> PathBuf {
    static CLEAN: Once = Once::new();
    CLEAN.call_once(remove_stale_temp_dirs);
    let name = format!(
        "{TEMP_PREFIX}{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple()
    );
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
