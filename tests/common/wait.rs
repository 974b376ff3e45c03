//! Waiting for a state: polls with a generous upper bound that panic with a description when
//! the state is not reached. Nothing here sleeps to assert timing.

use std::time::{Duration, Instant};

/// The upper bound of every wait for a state (blocked clients, replication link, ...).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `condition` every 10 ms for up to `WAIT_TIMEOUT`; whether it became true.
pub fn poll(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `condition` like `poll`, and panics naming `what` when it never holds.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    if !poll(condition) {
        panic!("timed out after {WAIT_TIMEOUT:?} waiting for {what}");
    }
}
