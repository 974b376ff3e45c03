//! The server-wide fencing-token counter, kept beside the data: saved with its lead over the
//! clock as RDB aux data, carried in every replicated or AOF-logged lock state, raised by every
//! token loaded or heard from another node up to a ceiling (core/state/tokens.rs). What lies beyond
//! the ceiling is refused or left out of the counter, counted in INFO (`lock_tokens_refused`)
//! and logged, at most once every `WARN_EVERY_MS`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::core::monitor::latency::Leads;
use crate::core::state::tokens::{BeyondCeiling, TokenCounter};
use crate::glue::effects::stats::{self, Counter};
use crate::glue::server::context::{log, now};

/// The last token handed out or seen. Commands run on the main thread only; an atomic keeps
/// the static safe without a lock, and lets a fork child's aux_save read it.
static LAST_TOKEN: AtomicU64 = AtomicU64::new(0);
/// How many tokens ahead of the clock the floor runs.
static LEAD: AtomicU64 = AtomicU64::new(0);

/// The lead before its last change, and the last token handed out or seen then: tokens up to
/// it were granted with that lead (a hold's age is read from its token: `Leads`).
static LEAD_BEFORE: AtomicU64 = AtomicU64::new(0);
static LEAD_CHANGED_AFTER: AtomicU64 = AtomicU64::new(0);

/// Runs `change` on the counter and keeps what it leaves.
#[inline]
pub fn with_tokens<T>(change: impl FnOnce(&mut TokenCounter) -> T) -> T {
    let (last, lead) = (
        LAST_TOKEN.load(Ordering::Relaxed),
        LEAD.load(Ordering::Relaxed),
    );
    let mut tokens = TokenCounter::from_parts(last, lead);
    let result = change(&mut tokens);
    LAST_TOKEN.store(tokens.last(), Ordering::Relaxed);
    if tokens.lead() != lead {
        lead_changed(lead, last, tokens.lead());
    }
    result
}

/// The lead moved from `before` (a promotion, or a lead taken in): noted as it happens, so
/// that every later token is read with the new one.
#[cold]
fn lead_changed(before: u64, last: u64, lead: u64) {
    let mut leads = Leads {
        now: before,
        ..leads()
    };
    leads.changed(lead, last);
    LEAD_BEFORE.store(leads.before, Ordering::Relaxed);
    LEAD_CHANGED_AFTER.store(leads.changed_after, Ordering::Relaxed);
    LEAD.store(leads.now, Ordering::Relaxed);
}

/// The leads tokens were granted with: the lead now, and before its last change.
#[inline]
pub fn leads() -> Leads {
    Leads {
        now: LEAD.load(Ordering::Relaxed),
        before: LEAD_BEFORE.load(Ordering::Relaxed),
        changed_after: LEAD_CHANGED_AFTER.load(Ordering::Relaxed),
    }
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

/// Takes back the counter and lead that RDB aux data saved, each within its bound.
pub fn restore(last: u64, lead: u64) {
    let now = now();
    if let Err(beyond) = with_tokens(|tokens| tokens.take_in_saved(last, lead, now)) {
        refused(
            "the saved token counter (RDB aux data)",
            beyond,
            "left out: the counter goes on from the clock's floor",
        );
    }
}

/// What to do with data that carries a token beyond the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beyond {
    /// The caller refuses the data: no token of it is taken in.
    Refuse,
    /// The caller keeps the data; the tokens beyond are left out of the counter.
    Ignore,
    /// The data is this replica's master's own stream: it is followed whole (the master bounds
    /// what it takes in, and its own lead from many promotions may pass the ceiling: leaving
    /// that out would let tokens fall after a failover).
    Follow,
}

/// Takes in the tokens of data from `source` (named in the log): every one within the ceiling
/// raises the counter. If one lies beyond it, `Beyond::Refuse` takes in none and answers
/// false (the caller then refuses the data); `Beyond::Ignore` leaves out only those beyond.
pub fn take_in(tokens: &[u64], source: &str, beyond: Beyond) -> bool {
    let now = now();
    if beyond == Beyond::Follow {
        with_tokens(|counter| tokens.iter().for_each(|&token| counter.observe(token, now)));
        return true;
    }
    let outcome = with_tokens(|counter| {
        if beyond == Beyond::Refuse {
            if let Some(error) = tokens.iter().find_map(|&t| counter.admits(t, now).err()) {
                return Err(error);
            }
        }
        let mut first_error = Ok(());
        for &token in tokens {
            if let (Err(error), Ok(())) = (counter.take_in(token, now), first_error) {
                first_error = Err(error);
            }
        }
        first_error
    });
    match (outcome, beyond) {
        (Ok(()), _) => true,
        (Err(error), Beyond::Refuse) => {
            refused(source, error, "refused, nothing changed");
            false
        }
        (Err(error), Beyond::Ignore | Beyond::Follow) => {
            refused(source, error, "kept, without raising the token counter");
            true
        }
    }
}

/// Takes in another node's floor, sent when its clock read `sent_at` (unix ms).
pub fn hear_floor(floor: u64, sent_at: i64) {
    let now = now();
    if let Err(error) = with_tokens(|tokens| tokens.take_in_floor(floor, sent_at, now)) {
        refused(
            "a token floor from the cluster bus",
            error,
            "ignored, the token counter stays as it was",
        );
    }
}

/// How often, at most, the log says that a token was refused: a file full of them, or a node
/// broadcasting one every second, must not flood it. INFO counts every one.
const WARN_EVERY_MS: i64 = 10_000;
/// When the log last said so (unix ms), and how many refusals it has not told of since.
static LAST_WARNING_AT: AtomicI64 = AtomicI64::new(i64::MIN);
static UNTOLD: AtomicU64 = AtomicU64::new(0);

/// Counts a refusal and tells the log, unless it did so less than `WARN_EVERY_MS` ago.
fn refused(source: &str, error: BeyondCeiling, outcome: &str) {
    stats::count(Counter::TokensRefused);
    let now = now();
    let last = LAST_WARNING_AT.load(Ordering::Relaxed);
    if now.saturating_sub(last) < WARN_EVERY_MS {
        UNTOLD.fetch_add(1, Ordering::Relaxed);
        return;
    }
    LAST_WARNING_AT.store(now, Ordering::Relaxed);
    let untold = UNTOLD.swap(0, Ordering::Relaxed);
    let more = match untold {
        0 => String::new(),
        n => format!(" ({n} more since the last warning, see INFO lock_tokens_refused)"),
    };
    let BeyondCeiling { seen, ceiling } = error;
    log(
        std::ptr::null_mut(),
        c"warning",
        &format!(
            "rlock: {source} carries a token beyond the bound ({seen} > {ceiling}: no honest \
             token runs more than ten years of clock ahead of this node's): {outcome}{more}"
        ),
    );
}

/// The counter's lead over the clock, in ms.
pub fn lead_ms() -> u64 {
    with_tokens(|tokens| tokens.lead_ms())
}
