//! The server-wide fencing-token counter, kept beside the data: saved with its lead over the
//! clock as RDB aux data, carried in every replicated or AOF-logged lock state, raised by every
//! token loaded or heard from another node (core/tokens.rs).

use std::sync::atomic::{AtomicU64, Ordering};

use super::context::now;
use crate::core::tokens::TokenCounter;

/// The last token handed out or seen. Commands run on the main thread only; an atomic keeps
/// the static safe without a lock, and lets a fork child's aux_save read it.
static LAST_TOKEN: AtomicU64 = AtomicU64::new(0);
/// How many tokens ahead of the clock the floor runs.
static LEAD: AtomicU64 = AtomicU64::new(0);

/// Runs `change` on the counter and keeps what it leaves.
pub fn with_tokens<T>(change: impl FnOnce(&mut TokenCounter) -> T) -> T {
    let mut tokens = TokenCounter::from_parts(
        LAST_TOKEN.load(Ordering::Relaxed),
        LEAD.load(Ordering::Relaxed),
    );
    let result = change(&mut tokens);
    LAST_TOKEN.store(tokens.last(), Ordering::Relaxed);
    LEAD.store(tokens.lead(), Ordering::Relaxed);
    result
}

pub fn last_token() -> u64 {
    LAST_TOKEN.load(Ordering::Relaxed)
}

/// The lowest token a grant at `now_ms` would get (minus one): the last token, or the clock
/// plus the lead when that is higher.
pub fn token_floor(now_ms: i64) -> u64 {
    with_tokens(|tokens| tokens.last().max(tokens.floor(now_ms)))
}

/// The counter's lead over the clock, in tokens (saved as RDB aux data).
pub fn lead() -> u64 {
    LEAD.load(Ordering::Relaxed)
}

/// The counter and lead that RDB aux data saved.
pub fn restore(last: u64, lead: u64) {
    let now = now();
    with_tokens(|tokens| {
        tokens.observe(last, now);
        tokens.restore_lead(lead);
    });
}

/// The counter's lead over the clock, in ms.
pub fn lead_ms() -> u64 {
    with_tokens(|tokens| tokens.lead_ms())
}

/// Takes in a token seen now (loaded, replicated, restored or heard from another node).
pub fn observe(token: u64) {
    let now = now();
    with_tokens(|tokens| tokens.observe(token, now));
}
