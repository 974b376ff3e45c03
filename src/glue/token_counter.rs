//! The server-wide fencing-token counter, kept beside the data: saved as RDB aux data, carried
//! in every replicated or AOF-logged lock state, raised by every token loaded.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::tokens::TokenCounter;

/// The last token handed out. Commands run on the main thread only; an atomic keeps the
/// static safe without a lock, and lets a fork child's aux_save read it.
static LAST_TOKEN: AtomicU64 = AtomicU64::new(0);

/// Runs `change` on the counter and keeps what it leaves.
pub fn with_tokens<T>(change: impl FnOnce(&mut TokenCounter) -> T) -> T {
    let mut tokens = TokenCounter::new();
    tokens.observe(LAST_TOKEN.load(Ordering::Relaxed));
    let result = change(&mut tokens);
    LAST_TOKEN.store(tokens.last(), Ordering::Relaxed);
    result
}

pub fn last_token() -> u64 {
    LAST_TOKEN.load(Ordering::Relaxed)
}

pub fn observe(token: u64) {
    with_tokens(|tokens| tokens.observe(token));
}
