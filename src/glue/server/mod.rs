//! The module API, wrapped without lock policy: calls checked at load (api), contexts and
//! logging (context), command and callback entry points that catch panics (entry), timers, the
//! registered type's value (value), key names (key_ref), the blocked-client handle
//! (blocked_client) and module configs (configs). Nothing here imports a room above it.

pub mod api;
pub mod blocked_client;
pub mod configs;
pub mod context;
pub mod entry;
pub mod key_ref;
pub mod recycled;
pub mod timers;
pub mod value;
