//! A lock as the server keeps it: one allocation, reached through the one thin pointer the
//! server stores per value: the packed `Lock` bytes for a plain lock (one exclusive holder, no
//! session), else the tagged bytes of its holds (`encoding::encode_holds`). The first bytes say
//! the size, so the allocation can be found again from that pointer alone.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering};

use crate::core::state::lock::{Lock, HEADER_BYTES};
use crate::core::stored::encoding::{value_size, HOLDS_TAG};
use crate::glue::server::recycled;

/// Lock values alive in the server (in keys, or loaded and about to be): derived from the data
/// itself, so it stays right across DEBUG RELOAD, restarts and full syncs. Atomic: the server
/// may free values on a background thread (lazy free).
static LIVE_VALUES: AtomicI64 = AtomicI64::new(0);

/// How many lock values the server holds now.
pub fn live_values() -> u64 {
    u64::try_from(LIVE_VALUES.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Of LIVE_VALUES, those in the tagged-holds form (shared, semaphore, session): their holders
/// carry their own expiries, which hooks/sweep.rs looks after while there are any.
static HOLDS_VALUES: AtomicI64 = AtomicI64::new(0);

/// How many tagged-holds values the server holds now.
pub fn holds_values() -> u64 {
    u64::try_from(HOLDS_VALUES.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Called when the first tagged-holds value appears (set once at load by hooks/sweep.rs,
/// which sits above this file): a function pointer, so no import points upward.
static ON_FIRST_HOLDS_VALUE: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Sets what is called when the number of tagged-holds values leaves 0.
pub fn on_first_holds_value(hook: fn()) {
    ON_FIRST_HOLDS_VALUE.store(hook as *mut (), Ordering::Relaxed);
}

fn holds_value_made() {
    if HOLDS_VALUES.fetch_add(1, Ordering::Relaxed) != 0 {
        return;
    }
    let hook = ON_FIRST_HOLDS_VALUE.load(Ordering::Relaxed);
    if !hook.is_null() {
        // SAFETY: only ever set from a `fn()` by on_first_holds_value.
        let hook: fn() = unsafe { std::mem::transmute::<*mut (), fn()>(hook) };
        hook();
    }
}

/// A new plain lock (as `Lock::boxed`), in a kept allocation of its size when there is one
/// (`recycled`).
#[inline]
pub fn new_plain_lock(owner: &[u8], count: u32, token: u64) -> Box<Lock> {
    if let Some(kept) = recycled::take(HEADER_BYTES + owner.len()) {
        if let Ok(lock) = Lock::refill(kept, owner, count, token) {
            return lock;
        }
    }
    Lock::boxed(owner, count, token)
}

/// Hands a lock to the server as a value pointer; `free_value` takes it back.
pub fn into_value(lock: Box<Lock>) -> *mut c_void {
    into_value_bytes(lock.into_boxed_bytes())
}

/// Hands a value's bytes to the server (a packed lock, or tagged holds whose size field is
/// right: `encode_holds` makes them so). `None` if their size field does not match.
pub fn into_value_checked(bytes: Box<[u8]>) -> Option<*mut c_void> {
    if bytes.len() < HEADER_BYTES || value_size(&bytes) != Some(bytes.len()) {
        return None;
    }
    if bytes.starts_with(&HOLDS_TAG) {
        holds_value_made();
    }
    Some(into_value_bytes(bytes))
}

fn into_value_bytes(bytes: Box<[u8]>) -> *mut c_void {
    LIVE_VALUES.fetch_add(1, Ordering::Relaxed);
    Box::into_raw(bytes).cast::<u8>().cast::<c_void>()
}

/// A value of ours, as it is kept.
pub enum Stored<'a> {
    Plain(&'a mut Lock),
    /// Tagged holds (`encoding::decode_holds` reads them).
    Holds(&'a [u8]),
}

/// The value behind a value pointer of our type.
///
/// # Safety
/// `value` must come from `into_value` and not be freed, and nothing else may use the value
/// while the returned borrow lives.
pub unsafe fn stored<'a>(value: *mut c_void) -> Option<Stored<'a>> {
    // SAFETY: the caller promises a live value of ours.
    let bytes = unsafe { value_bytes(value)? };
    if bytes.starts_with(&HOLDS_TAG) {
        Some(Stored::Holds(bytes))
    } else {
        Lock::from_bytes_mut(bytes).map(Stored::Plain)
    }
}

/// The bytes a value of ours takes (MEMORY USAGE).
///
/// # Safety
/// As `stored`.
pub unsafe fn size_of(value: *mut c_void) -> usize {
    // SAFETY: the caller promises a live value of ours.
    unsafe { value_bytes(value) }.map_or(0, |bytes| bytes.len())
}

/// Frees a value pointer of our type.
///
/// # Safety
/// `value` must come from `into_value` and be freed only this once.
pub unsafe fn free_value(value: *mut c_void) {
    // SAFETY: the caller promises a live value of ours; the slice is exactly the allocation
    // into_value leaked, so rebuilding the Box frees it with its own layout.
    if let Some(bytes) = unsafe { value_bytes(value) } {
        let bytes = unsafe { Box::from_raw(bytes as *mut [u8]) };
        LIVE_VALUES.fetch_sub(1, Ordering::Relaxed);
        // A plain lock's allocation may be kept for the next lock of its size.
        if bytes.starts_with(&HOLDS_TAG) {
            HOLDS_VALUES.fetch_sub(1, Ordering::Relaxed);
        } else {
            drop(recycled::give_back(bytes));
        }
    }
}

/// # Safety
/// `value` must be null or come from `into_value` and still be allocated.
unsafe fn value_bytes<'a>(value: *mut c_void) -> Option<&'a mut [u8]> {
    if value.is_null() {
        return None;
    }
    let start = value.cast::<u8>();
    // SAFETY: every value of ours is at least HEADER_BYTES long; the header gives the rest.
    let header = unsafe { std::slice::from_raw_parts(start, HEADER_BYTES) };
    let size = value_size(header)?;
    // SAFETY: the allocation is exactly `size` bytes (the lock's layout was valid when made).
    Some(unsafe { std::slice::from_raw_parts_mut(start, size) })
}

/// The registered lock type's handle, compared with a key's type before its value is touched.
/// Set once at load (lib.rs), after the server registered the type.
static LOCK_TYPE_HANDLE: std::sync::atomic::AtomicPtr<redis_module::raw::RedisModuleType> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Remembers the registered type's handle (at load).
pub fn set_lock_type(handle: *mut redis_module::raw::RedisModuleType) {
    LOCK_TYPE_HANDLE.store(handle, std::sync::atomic::Ordering::Relaxed);
}

/// The registered lock type.
pub fn lock_type() -> *mut redis_module::raw::RedisModuleType {
    LOCK_TYPE_HANDLE.load(std::sync::atomic::Ordering::Relaxed)
}
