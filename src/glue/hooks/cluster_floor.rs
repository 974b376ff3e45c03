//! A cluster-wide floor for fencing tokens, carried by the cluster bus.
//!
//! Tokens follow the clock across nodes (core/state/tokens.rs), except where a node's counter runs
//! ahead of its clock: after a promotion lifted it by the split allowance, or after its clock
//! stepped back. Such a lead would let a slot moved off that node get lower tokens on its new
//! node. So every master broadcasts its last token to all nodes once a second and at once after
//! a promotion, and every node raises its counter to what it hears, up to the ceiling of
//! core/state/tokens.rs (a floor beyond it is ignored and logged). Outside cluster mode this does
//! nothing.

use std::ffi::{c_char, c_uchar, c_void};

use redis_module::raw::{self, RedisModuleCtx};

use crate::glue::effects::token_counter::{hear_floor, token_floor};
use crate::glue::server::api::rm;
use crate::glue::server::context::{now, Ctx};
use crate::glue::server::entry::run_callback;
use crate::glue::server::timers;

/// Our message type on the cluster bus (the bus keeps each module's types apart).
const FLOOR_MESSAGE: u8 = 1;
/// How often a master tells the other nodes its counter.
const BROADCAST_EVERY_MS: i64 = 1000;

fn in_cluster(ctx: Ctx) -> bool {
    ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_CLUSTER)
}

/// Listens for other nodes' floors and starts the periodic broadcast (cluster mode only).
pub fn register(ctx: *mut RedisModuleCtx) {
    let ctx = Ctx(ctx);
    if !in_cluster(ctx) {
        return;
    }
    // SAFETY: ctx is the loading module's context; the callback is a plain function.
    unsafe {
        rm!(RedisModule_RegisterClusterMessageReceiver)(ctx.0, FLOOR_MESSAGE, Some(floor_heard))
    };
    timers::start(ctx, BROADCAST_EVERY_MS, broadcast_tick, 0);
}

/// Tells every other node this master's floor: its last token or, when higher, the clock plus
/// its lead (nothing on replicas or outside a cluster).
pub fn broadcast(ctx: Ctx) {
    if !in_cluster(ctx) || !ctx.has_flag(raw::REDISMODULE_CTX_FLAGS_MASTER) {
        return;
    }
    let sent_at = now();
    let floor = token_floor(sent_at);
    let payload = encode_floor(floor, sent_at);
    // SAFETY: ctx is live; a null target broadcasts; the payload outlives the call, which
    // copies it. A failure (the bus is down) is retried by the next tick.
    unsafe {
        rm!(RedisModule_SendClusterMessage)(
            ctx.0,
            std::ptr::null(),
            FLOOR_MESSAGE,
            payload.as_ptr().cast::<c_char>(),
            payload.len() as u32,
        )
    };
}

/// A message: the sender's floor and its clock when it sent it, both big-endian. The receiver
/// takes the sender's lead over the sender's own clock, not over its own later clock: the
/// bus's delay must not shave the lead.
fn encode_floor(floor: u64, sent_at: i64) -> [u8; 16] {
    let mut payload = [0; 16];
    payload[..8].copy_from_slice(&floor.to_be_bytes());
    payload[8..].copy_from_slice(&sent_at.to_be_bytes());
    payload
}

/// The floor and send time a message carries, or None for anything but 16 bytes.
fn decode_floor(payload: &[u8]) -> Option<(u64, i64)> {
    let payload: &[u8; 16] = payload.try_into().ok()?;
    let (floor, sent_at) = payload.split_at(8);
    Some((
        u64::from_be_bytes(floor.try_into().ok()?),
        i64::from_be_bytes(sent_at.try_into().ok()?),
    ))
}

unsafe extern "C" fn floor_heard(
    _ctx: *mut RedisModuleCtx,
    _sender_id: *const c_char,
    _message_type: u8,
    payload: *const c_uchar,
    len: u32,
) {
    run_callback("a token floor from the cluster bus", (), || {
        if payload.is_null() {
            return;
        }
        // SAFETY: the server hands us `len` readable bytes for the duration of the call.
        let bytes = unsafe { std::slice::from_raw_parts(payload, len as usize) };
        if let Some((floor, sent_at)) = decode_floor(bytes) {
            // Within the bound only: one poisoned node must not end every node's grants.
            hear_floor(floor, sent_at);
        }
    })
}

unsafe extern "C" fn broadcast_tick(ctx: *mut RedisModuleCtx, _data: *mut c_void) {
    run_callback("the token floor broadcast", (), || {
        let ctx = Ctx(ctx);
        // Re-armed first: a failing broadcast must not end the ticks.
        timers::start(ctx, BROADCAST_EVERY_MS, broadcast_tick, 0);
        broadcast(ctx);
    })
}

#[cfg(test)]
mod tests {
    use super::{decode_floor, encode_floor};

    #[test]
    fn a_floor_message_is_the_floor_and_the_send_time_in_sixteen_bytes() {
        let payload = encode_floor(42, 1_796_000_000_000);
        assert_eq!(decode_floor(&payload), Some((42, 1_796_000_000_000)));
        assert_eq!(decode_floor(&payload[..15]), None);
        assert_eq!(decode_floor(&[0; 17]), None);
        assert_eq!(decode_floor(&[]), None);
    }
}
