//! Client for rlock, the Redis module that makes a lock a native server
//! command (`LOCK.ACQUIRE`, `LOCK.RELEASE`, `LOCK.RENEW`, ...), on the `redis` crate.
//!
//! * [`Lock`] describes a lock: key, owner id (a fresh UUID per `Lock` unless set), a fixed
//!   ttl or a lease renewed by a watchdog (the default: 30 s, renewed every 10 s), an optional
//!   wait in the server's FIFO queue, optional replica sync.
//! * [`Lock::acquire`] (blocking, any `redis::ConnectionLike`) returns a [`LockGuard`] that
//!   releases on drop; [`Lock::acquire_async`] (tokio, feature `tokio`, on by default)
//!   returns an [`AsyncLockGuard`] with `release().await` and a best-effort release on drop.
//! * Each guard carries the fencing token ([`LockGuard::token`]) and reports loss
//!   ([`LockGuard::is_lost`], [`AsyncLockGuard::lost`]).
//! * Re-acquiring with the same owner id (the same `Lock`, or one with the same
//!   [`Lock::owner`]) while it is held is a reentry: the server counts holds, the token stays,
//!   each guard is one count and releases it once. A reentry never shortens the hold, and
//!   never takes a lost hold afresh ([`Error::NotHeld`]).
//! * Retries are safe: every `LOCK.ACQUIRE` and `LOCK.RELEASE` carries `HELD n`, the count this
//!   process knows the owner has, so a command sent twice (by a connection that resends on a
//!   timeout, or by the client itself) takes effect once. A timed-out or cancelled acquisition
//!   gives a late grant back, for every kind of hold.
//! * Besides exclusive locks: shared (read) holds ([`Lock::shared`]), semaphore permits
//!   ([`Lock::limit`]) and session holds that end with their connection ([`Lock::session`]),
//!   with the same guards.
//! * Leader election on a key ([`Election`]): campaigns wait in the server's queue for a
//!   session hold renewed by the watchdog; [`Leadership::is_leader`] is a deadline by the
//!   client's clock, a [`LostSignal`] tells the leader's work to stop, and
//!   [`Election::observe`] follows leader changes (`LOCK.OBSERVE`).
//! * A release, renewal or reentry that finds the hold gone says why
//!   ([`Error::NotHeld`]'s [`LossReason`], from the server's `LOCK.LOST`).
//! * Every failure is an [`Error`]; nothing panics.
//!
//! Durations are [`std::time::Duration`]s, sent as whole milliseconds rounded up (at least
//! 1 ms, at most 30 days). A watched lease is at least [`MIN_LEASE`] (1 s).
//!
//! ```no_run
//! # fn main() -> Result<(), rlock_client::Error> {
//! use std::time::Duration;
//! use rlock_client::Lock;
//!
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let mut conn = client.get_connection()?;
//! // Lease mode: held while the guard lives, renewed by a watchdog thread.
//! let lock = Lock::new("orders:42").wait(Duration::from_secs(5)).watchdog(client.clone());
//! let guard = lock.acquire(&mut conn)?;
//! assert!(!guard.is_lost());
//! println!("fencing token {}", guard.token());
//! guard.release()?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod aio;
pub mod election;
mod error;
mod guard;
mod held;
mod lease;
mod lock;
mod lost;
mod multi;
mod owners;

#[cfg(feature = "tokio")]
pub use aio::{AsyncConnection, AsyncLockGuard};
#[cfg(feature = "tokio")]
pub use election::AsyncLeadership;
pub use election::{Election, Leader, Leadership, LostSignal, Observer};
pub use error::{Error, Result};
pub use guard::LockGuard;
pub use lock::{Lock, DEFAULT_LEASE, MAX_HOLDS, MAX_LIMIT, MAX_MS, MAX_OWNER_LEN, MIN_LEASE};
pub use lost::{KeyHolder, LossReason, LostBy};
pub use multi::{MultiGuard, MultiLock, MAX_KEYS};
