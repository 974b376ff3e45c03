//! The commands over several keys at once (`numkeys key [key ...]`, as LMPOP and SINTERCARD
//! take them): LOCK.MACQUIRE takes every key or none, LOCK.MRELEASE and LOCK.MRENEW let go of
//! or renew what the owner holds of them. The keys of one call must hash to one slot in a
//! cluster (CROSSSLOT otherwise: the server checks it from the key spec).

pub mod macquire;
pub mod mrelease;
pub mod mrenew;

use redis_module::raw;

use crate::core::error::LockError;
use crate::core::request::parse_integer;
use crate::core::state::holds::Holds;
use crate::glue::effects::keys::{LockKey, OwnedString};
use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;
use crate::glue::server::entry::Args;

/// Answers the server's question which arguments are keys (`getkeys-api`: the cluster's slot
/// check, MOVED and CROSSSLOT, go by it on every server; ACL and COMMAND GETKEYS use the key
/// spec): `numkeys` keys from argument 2. Whether it was that question (then nothing else
/// may be done or replied).
pub fn keys_asked(ctx: Ctx, args: &Args) -> bool {
    // SAFETY: ctx is the running command's context.
    if unsafe { rm!(RedisModule_IsKeysPositionRequest)(ctx.0) } == 0 {
        return false;
    }
    let given = args.bytes().len().saturating_sub(1);
    let numkeys = parse_integer(args.key_bytes())
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(given);
    for position in 2..2 + numkeys {
        // SAFETY: as above, in a keys-position request; position is within argv.
        unsafe { rm!(RedisModule_KeyAtPos)(ctx.0, position as _) };
    }
    true
}

/// The arguments as the several-key parsers take them: `Args` leaves its first slot (here
/// `numkeys`) empty, so it is read.
pub fn all_args<'a>(args: &Args<'a>) -> Vec<&'a [u8]> {
    let mut all = args.bytes().to_vec();
    if let Some(first) = all.first_mut() {
        *first = args.key_bytes();
    }
    all
}

/// One key of a several-key call, opened for writing, with its holds as read.
pub struct OpenKey {
    pub name: OwnedString,
    pub key: LockKey,
    /// `None`: the key is empty.
    pub holds: Option<Holds>,
}

impl OpenKey {
    pub fn name_ptr(&self) -> *mut raw::RedisModuleString {
        self.name.as_ptr()
    }
}

/// Opens every key and reads its holds: WRONGTYPE if any is not a lock (nothing changed).
pub fn open_all(ctx: Ctx, keys: &[&[u8]]) -> Result<Vec<OpenKey>, LockError> {
    let mut open = Vec::with_capacity(keys.len());
    for bytes in keys {
        let name = OwnedString::new(ctx, bytes);
        let mut key = LockKey::open_writable(ctx, name.as_ptr());
        let holds = key.holds()?;
        open.push(OpenKey { name, key, holds });
    }
    Ok(open)
}
