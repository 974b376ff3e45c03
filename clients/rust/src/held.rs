//! What both guards (blocking and async) hold, and the bookkeeping they share.

use std::sync::Arc;

use crate::lease::LeaseState;
use crate::lock::release_cmd;

/// A held lock: key, owner id, fencing token, and the lease state shared with the watchdog.
#[derive(Debug)]
pub(crate) struct Held {
    pub key: Vec<u8>,
    pub owner: Vec<u8>,
    pub token: u64,
    pub state: Arc<LeaseState>,
}

impl Held {
    /// `LOCK.RELEASE` of this hold.
    pub fn release_cmd(&self) -> redis::Cmd {
        release_cmd(&self.key, &self.owner)
    }

    /// The guards' `Debug`: key and owner as text, token, whether lost.
    pub fn debug(&self, guard: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(guard)
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("owner", &String::from_utf8_lossy(&self.owner))
            .field("token", &self.token)
            .field("lost", &self.state.is_lost())
            .finish_non_exhaustive()
    }
}
