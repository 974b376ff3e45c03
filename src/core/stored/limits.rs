//! The hard limits of a request, and what an operator may lower at runtime.

/// The longest ttl or WAIT timeout: 30 days. A lock held longer should be renewed.
pub const MAX_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// The longest owner id: far above a UUID plus a thread id, low enough to bound memory.
pub const MAX_OWNER_BYTES: usize = 1024;

/// What an operator may lower at runtime (module configs `lock.max-ttl`,
/// `lock.max-owner-bytes`); never above the hard limits, which stored data is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_ttl_ms: u64,
    pub max_owner_bytes: usize,
}

impl Limits {
    pub const HARD: Limits = Limits {
        max_ttl_ms: MAX_TTL_MS,
        max_owner_bytes: MAX_OWNER_BYTES,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::HARD
    }
}
