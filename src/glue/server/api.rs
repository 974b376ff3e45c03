//! Access to the server's module API function table.
//!
//! The table is filled by `RedisModule_Init`. At load, `missing_required` checks every call
//! made through `rm!` (build.rs lists them from src/, so the list cannot drift) and rlock
//! refuses to load on a server that lacks one: the `rm!` lookups after that cannot miss.

/// The server's implementation of `RedisModule_<name>`.
macro_rules! rm {
    ($name:ident) => {{
        // SAFETY: the table is written once, by RedisModule_Init, before any of our code runs.
        #[allow(unused_unsafe)]
        let function = match unsafe { redis_module::raw::$name } {
            Some(function) => function,
            None => {
                // Out of line and without arguments: the call site only tests and jumps (the
                // name's setup was hoisted above the test, two instructions every call).
                #[cold]
                #[inline(never)]
                fn missing_here() -> ! {
                    $crate::glue::server::api::missing(stringify!($name))
                }
                missing_here()
            }
        };
        function
    }};
}
pub(crate) use rm;

/// Unreachable after `missing_required` found nothing missing at load; a panic here is caught at the entry point.
#[cold]
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
