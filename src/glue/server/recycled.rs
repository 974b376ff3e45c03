//! Freed plain-lock allocations kept for the next plain locks of the same size (issue 25).
//!
//! A lock's bytes are one small allocation (`[owner length | token and count | owner]`), made
//! at every first acquire and freed at every last release. Through the server's allocator each
//! costs about 100 instructions (the allocation, and the server's own count of used memory,
//! which asks the allocator for the block's size every time): a fifth of what rlock itself
//! adds to a lock/unlock pair. A client keeps one owner length (its id), so most locks have
//! the same size: up to `CAPACITY` freed allocations of the size freed last are kept and
//! handed to the next locks of that size. A free of another size, of a lock past the capacity,
//! or while another thread (a lazy free) holds the stack, goes to the allocator as before.
//!
//! Kept bytes stay counted as the server's used memory, as they were when they held a lock: at
//! most `CAPACITY * MAX_LEN` bytes (64 KB) beyond what the keys hold.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many freed allocations are kept.
pub const CAPACITY: usize = 1024;
/// The largest allocation kept (a 36-byte UUID owner with a ":n" suffix is 48 with its header).
pub const MAX_LEN: usize = 64;

struct Stack {
    /// The byte length of every allocation kept.
    len: usize,
    count: usize,
    kept: [*mut u8; CAPACITY],
}

/// The stack, behind `BUSY`: the server frees values on its main thread, and on a background
/// thread for a lazy free (FLUSHALL ASYNC); whoever finds it taken does without.
struct Shared(UnsafeCell<Stack>);

// SAFETY: every access holds BUSY (acquired with swap, released with a release store).
unsafe impl Sync for Shared {}

static STACK: Shared = Shared(UnsafeCell::new(Stack {
    len: 0,
    count: 0,
    kept: [std::ptr::null_mut(); CAPACITY],
}));
static BUSY: AtomicBool = AtomicBool::new(false);

/// Runs `f` on the stack unless another thread has it (then `None`).
fn with_stack<T>(f: impl FnOnce(&mut Stack) -> T) -> Option<T> {
    if BUSY.swap(true, Ordering::Acquire) {
        return None;
    }
    // SAFETY: BUSY was false and is now ours: no other reference to the stack exists.
    let result = f(unsafe { &mut *STACK.0.get() });
    BUSY.store(false, Ordering::Release);
    Some(result)
}

/// A kept allocation of exactly `len` bytes (its old contents), if there is one.
#[inline]
pub fn take(len: usize) -> Option<Box<[u8]>> {
    let ptr = with_stack(|stack| {
        if stack.count == 0 || stack.len != len {
            return None;
        }
        stack.count -= 1;
        Some(stack.kept[stack.count])
    })??;
    // SAFETY: `ptr` came from Box::into_raw of a Box<[u8]> of `len` bytes (give_back), and
    // left the stack just now: this is its only owner.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) })
}

/// Keeps `bytes` for a later `take` of its length; gives them back when they are not kept
/// (the caller frees them).
#[inline]
pub fn give_back(bytes: Box<[u8]>) -> Option<Box<[u8]>> {
    let len = bytes.len();
    if len == 0 || len > MAX_LEN {
        return Some(bytes);
    }
    let ptr = Box::into_raw(bytes).cast::<u8>();
    let kept = with_stack(|stack| {
        if stack.count == 0 {
            stack.len = len;
        }
        if stack.len != len || stack.count == CAPACITY {
            return false;
        }
        stack.kept[stack.count] = ptr;
        stack.count += 1;
        true
    });
    if kept == Some(true) {
        return None;
    }
    // SAFETY: not kept: `ptr` is still the allocation of `len` bytes it was made from.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) })
}

/// How many allocations are kept now, and their size (0 with none kept): INFO and tests.
pub fn kept() -> (usize, usize) {
    with_stack(|stack| (stack.count, if stack.count > 0 { stack.len } else { 0 })).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the one stack: each empties it first and leaves it empty.
    fn empty() {
        let (count, len) = kept();
        for _ in 0..count {
            drop(take(len));
        }
    }

    #[test]
    fn a_freed_allocation_is_handed_to_the_next_of_its_size_only() {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        empty();
        let freed = vec![7u8; 26].into_boxed_slice();
        let at = freed.as_ptr();
        assert!(give_back(freed).is_none(), "kept");
        assert_eq!(kept(), (1, 26));
        assert!(take(27).is_none(), "another size is not handed out");
        let again = take(26).expect("the kept one");
        assert_eq!((again.as_ptr(), again.len()), (at, 26));
        assert!(take(26).is_none(), "only once");
        // Another size than the kept ones goes back to the caller; past the capacity too.
        for _ in 0..CAPACITY {
            assert!(give_back(vec![0u8; 26].into_boxed_slice()).is_none());
        }
        assert!(
            give_back(vec![0u8; 26].into_boxed_slice()).is_some(),
            "past the capacity"
        );
        assert!(
            give_back(vec![0u8; 30].into_boxed_slice()).is_some(),
            "another size"
        );
        assert!(
            give_back(vec![0u8; MAX_LEN + 1].into_boxed_slice()).is_some(),
            "too long"
        );
        assert_eq!(kept(), (CAPACITY, 26));
        empty();
        assert_eq!(kept(), (0, 0));
        // Once empty, the stack takes the next size freed, up to MAX_LEN bytes.
        assert!(
            give_back(vec![0u8; MAX_LEN + 1].into_boxed_slice()).is_some(),
            "too long"
        );
        assert!(give_back(Box::default()).is_some(), "empty");
        assert_eq!(kept(), (0, 0));
        assert!(give_back(vec![0u8; MAX_LEN].into_boxed_slice()).is_none());
        assert_eq!(kept(), (1, MAX_LEN));
        empty();
        assert!(give_back(vec![0u8; 30].into_boxed_slice()).is_none());
        assert_eq!(kept(), (1, 30));
        empty();
    }
}
