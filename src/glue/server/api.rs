//! Access to the server's module API function table.
//!
//! The table is filled by `RedisModule_Init`. At load, `missing_required` checks every call
//! made through `rm!` (build.rs lists them from src/, so the list cannot drift) and rlock
//! refuses to load on a server that lacks one: the `rm!` lookups after that cannot miss.

/// The server's implementation of `RedisModule_<name>`.
///
/// Unchecked: `missing_required`, run first in the module's init, refuses to load on a server
/// that lacks any call named in an `rm!` anywhere in src/ (build.rs lists them, so the list
/// cannot drift), and the table is written once, by `RedisModule_Init`, before that check. A
/// checked lookup cost two instructions on every call (a test and a jump), some 60 a lock pair.
/// Unit tests, which run without a server, keep the check (a missing call panics there).
macro_rules! rm {
    ($name:ident) => {{
        #[cfg(not(test))]
        #[allow(unused_unsafe)]
        // SAFETY: present, as said above; the table is never written after the check.
        let function = match unsafe { redis_module::raw::$name } {
            Some(function) => function,
            None => unsafe { std::hint::unreachable_unchecked() },
        };
        #[cfg(test)]
        let function = $crate::glue::server::api::rm_checked!($name);
        function
    }};
}

/// As `rm!`, checked: for the calls made before `missing_required` has run (the log line
/// that says what is missing).
macro_rules! rm_checked {
    ($name:ident) => {{
        #[allow(unused_unsafe)]
        let function = match unsafe { redis_module::raw::$name } {
            Some(function) => function,
            None => $crate::glue::server::api::missing(stringify!($name)),
        };
        function
    }};
}
pub(crate) use rm;
pub(crate) use rm_checked;

/// A call missing from the table: in unit tests (no server), and for `rm_checked!`.
#[cold]
#[inline(never)]
pub fn missing(name: &str) -> ! {
    panic!("{name} is missing from this server's module API")
}

/// A module API call's name (without `RedisModule_`) and whether this server has it.
type ApiCall = (&'static str, fn() -> bool);

// `REQUIRED`: every call made through `rm!` in src/, listed by build.rs.
include!(concat!(env!("OUT_DIR"), "/required_api.rs"));

/// The names of required calls this server lacks (empty when all are there).
pub fn missing_required() -> Vec<&'static str> {
    REQUIRED
        .iter()
        .filter(|(_, present)| !present())
        .map(|(name, _)| *name)
        .collect()
}
