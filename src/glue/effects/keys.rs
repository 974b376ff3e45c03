//! A key opened for a lock command: typed access to the lock value it holds, closed on drop.

use redis_module::raw::{self, RedisModuleKey, RedisModuleString};

use crate::core::error::LockError;
use crate::core::state::epoch::Snapshot;
use crate::core::state::holds::Holds;
use crate::core::state::lock::Lock;
use crate::core::state::plain::Held;
use crate::core::stored::encoding::{decode_holds, encode_holds};
use crate::core::Millis;
use crate::glue::effects::signals::{self, Event};
use crate::glue::effects::stats::{self, Counter};
use crate::glue::effects::{moved_values, observed};
use crate::glue::server::api::rm;
use crate::glue::server::context::{client_connected, Ctx};
use crate::glue::server::entry::string_bytes;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::value::{into_value, into_value_checked, lock_type, stored, Stored};

/// What a key holds, looked at without decoding anything.
pub enum Found<'a> {
    Empty,
    /// A plain lock (one exclusive holder, no session) and its key's expiry.
    Plain(Held<'a>),
    /// Holds of another kind (shared, semaphore, session): `holds()` decodes them.
    Holds,
}

/// The key is opened for writing even when the call may end up changing nothing, but the
/// module option NO_IMPLICIT_SIGNAL_MODIFIED keeps the server from treating every such open as
/// a change: only a key that really changed is signalled (WATCH, client-side caching), once,
/// when it is closed.
pub struct LockKey {
    key: *mut RedisModuleKey,
    ctx: Ctx,
    name: *mut RedisModuleString,
    changed: bool,
    /// Session holds found ended (their connection closed) that the next write stores.
    sessions_closed: usize,
    /// Of those, holds that had expired already: stored as gone, not reported as ended.
    sessions_closed_expired: usize,
    /// The key's expiry once read (`RM_GetAbsExpire` looks the key up again each time),
    /// kept as this key handle changes it.
    expiry: Option<Option<Millis>>,
}

impl LockKey {
    /// Opens `name` for reading and writing. On a master an expired key is deleted by the
    /// server here, so a key that is still there is live by the server's clock.
    pub fn open_writable(ctx: Ctx, name: *mut RedisModuleString) -> LockKey {
        Self::open(ctx, name, raw::REDISMODULE_READ | raw::REDISMODULE_WRITE)
    }

    #[inline]
    fn open(ctx: Ctx, name: *mut RedisModuleString, mode: u32) -> LockKey {
        let _opening = crate::glue::effects::monitor::Opening::begin();
        // SAFETY: ctx and name are live for the running callback; the key is closed on drop.
        let key = unsafe { rm!(RedisModule_OpenKey)(ctx.0, name, mode as i32) }.cast();
        LockKey {
            key,
            ctx,
            name,
            changed: false,
            sessions_closed: 0,
            sessions_closed_expired: 0,
            expiry: None,
        }
    }

    /// The lock was changed in place (a hold count through `lock()`): signal it on close.
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Emits a keyspace event about this key, as the server's own commands do.
    pub fn notify(&self, event: Event) {
        signals::notify(self.ctx, event, self.name);
    }

    /// Publishes "expired": rlock removed the lock because every ttl ran out (the caller counts
    /// it; `signals::notify_expired`).
    pub fn notify_expired(&self) {
        signals::notify_expired(self.ctx, self.name);
    }

    /// The value the key holds: `None` when the key is empty, WRONGTYPE for another type.
    fn value(&mut self) -> Result<Option<Stored<'_>>, LockError> {
        let Some(value) = self.value_pointer()? else {
            return Ok(None);
        };
        // SAFETY: values of our type always come from into_value; the key owns it and nothing
        // else touches it while this command runs (we hold &mut self).
        Ok(unsafe { stored(value) })
    }

    /// What the key holds, for the plain lock's commands (`core::state::plain`): a plain lock comes
    /// with its key's expiry; nothing is decoded or copied.
    #[inline]
    pub fn found(&mut self) -> Result<Found<'_>, LockError> {
        let Some(value) = self.value_pointer()? else {
            return Ok(Found::Empty);
        };
        // SAFETY: as in value(); the lock is only read, once the expiry is.
        let lock: *const Lock = match unsafe { stored(value) } {
            Some(Stored::Plain(lock)) => lock,
            _ => return Ok(Found::Holds),
        };
        let expires_at = self.expiry();
        // SAFETY: the value is the key's and stays put: the returned borrow holds &mut self,
        // so nothing changes or replaces it while the borrow lives.
        let lock = unsafe { &*lock };
        Ok(Found::Plain(Held { lock, expires_at }))
    }

    /// The plain lock the key holds, without its expiry (`Found::Plain` with `expires_at`
    /// `None`): for a command on a key opened for writing, which is there only if live
    /// (`open_writable`) and needs the expiry only in some outcomes (`expiry()` reads it then).
    #[inline]
    pub fn found_unexpired(&mut self) -> Result<Found<'_>, LockError> {
        let Some(value) = self.value_pointer()? else {
            return Ok(Found::Empty);
        };
        // SAFETY: as in found().
        match unsafe { stored(value) } {
            Some(Stored::Plain(lock)) => Ok(Found::Plain(Held {
                lock,
                expires_at: None,
            })),
            _ => Ok(Found::Holds),
        }
    }

    /// Sets the plain lock's hold count in place (signalled on close); false if the key holds
    /// no plain lock.
    pub fn set_plain_count(&mut self, count: u32) -> bool {
        let Ok(Some(Stored::Plain(lock))) = self.value() else {
            return false;
        };
        lock.set_count(count);
        self.mark_changed();
        true
    }

    /// The server's pointer to our value: `None` when the key is empty, WRONGTYPE for another
    /// type.
    #[inline]
    fn value_pointer(&mut self) -> Result<Option<*mut std::ffi::c_void>, LockError> {
        if self.key.is_null() {
            return Ok(None);
        }
        // The type first: it is null for an empty key and for every other type, and a lock
        // then needs no KeyType call (each is a call into the server).
        // SAFETY: self.key is an open key.
        let found_type = unsafe { rm!(RedisModule_ModuleTypeGetType)(self.key) };
        if !found_type.is_null() && found_type == lock_type() {
            // SAFETY: self.key is an open key holding a value of our type.
            return Ok(Some(unsafe {
                rm!(RedisModule_ModuleTypeGetValue)(self.key)
            }));
        }
        // SAFETY: self.key is an open key.
        let key_type = unsafe { rm!(RedisModule_KeyType)(self.key) } as isize;
        if key_type == raw::REDISMODULE_KEYTYPE_EMPTY {
            return Ok(None);
        }
        Err(LockError::WrongType)
    }

    /// The holds on the key (a copy to change and `put` back): `None` when the key is empty,
    /// WRONGTYPE for another type. A plain lock's holder expires with the key; an admin's
    /// earlier expiry of the key ends every other hold then. Session holds whose connection
    /// has closed are left out (and counted, for the next `put` to report).
    pub fn holds(&mut self) -> Result<Option<Holds>, LockError> {
        let Some(value) = self.value_pointer()? else {
            return Ok(None);
        };
        let expiry = self.expiry();
        // SAFETY: as in value().
        let mut holds = match unsafe { stored(value) } {
            None => return Ok(None),
            Some(Stored::Plain(lock)) => Holds::from_lock(lock, expiry),
            // Our own bytes, checked when they were made: a failure is a bug, shown as one.
            Some(Stored::Holds(bytes)) => {
                let mut holds = decode_holds(bytes, true).map_err(|_| LockError::WrongType)?;
                holds.cap_expiries(expiry);
                holds
            }
        };
        let now = crate::glue::server::context::now();
        // A holder of a key others still hold expires alone, with no key event: logged when a
        // command first finds it so (once per hold: the log dedupes).
        crate::glue::effects::monitor::expiring(
            self.ctx.selected_db(),
            || self.name_bytes(),
            &holds,
            now,
        );
        crate::glue::effects::monitor::sessions_closed(
            self.ctx.selected_db(),
            || self.name_bytes(),
            &holds,
            client_connected,
            now,
        );
        let (closed, live) = holds.end_closed_sessions(client_connected, now);
        self.sessions_closed = closed;
        self.sessions_closed_expired = closed - live;
        Ok(Some(holds))
    }

    /// How many session holds `holds()` found ended by their connection closing.
    pub fn sessions_closed(&self) -> usize {
        self.sessions_closed
    }

    /// `n` more session holds were ended (by the caller) for the next write to report.
    pub fn note_sessions_ended(&mut self, n: usize) {
        self.sessions_closed += n;
    }

    /// Session holds ended since the key was read are now stored as ended: counted and
    /// published (`lock.session_end`) once.
    fn report_sessions_ended(&mut self) {
        // A closed connection's hold that had run out already ended by its ttl.
        let expired = std::mem::take(&mut self.sessions_closed_expired);
        let ended = std::mem::take(&mut self.sessions_closed).saturating_sub(expired);
        if ended > 0 {
            stats::add(Counter::SessionEnds, ended as u64);
            self.notify(Event::SessionEnd);
        }
    }

    /// Stores `holds` as the key's value: deleted when free, the packed form for a plain lock
    /// (changed in place when it is the same lock), else tagged bytes; the key expires with
    /// the latest holder. The caller runs under `handoff::Handling` (a replaced value is
    /// unlinked, which must not schedule a check).
    pub fn put(&mut self, holds: &Holds) {
        self.report_sessions_ended();
        if holds.is_free() {
            self.delete();
            return;
        }
        let Some((lock, expires_at)) = holds.as_plain_lock() else {
            if let Some(value) = into_value_checked(encode_holds(holds)) {
                self.set_value(value, holds.key_expiry());
            }
            return;
        };
        if let Ok(Some(Stored::Plain(held))) = self.value() {
            if held.token() == lock.token() && held.owner() == lock.owner() {
                held.set_count(lock.count());
                self.mark_changed();
                self.move_expiry(expires_at);
                return;
            }
        }
        self.store(lock, expires_at);
    }

    /// Sets the key's expiry to `expires_at` after an in-place change, unless it is that
    /// already (`None`: the lock stays permanent).
    pub fn move_expiry(&mut self, expires_at: Option<Millis>) {
        if let Some(at) = expires_at {
            if self.expiry() != Some(at) {
                self.set_expiry(at);
            }
        }
    }

    /// The key's expiry in unix ms: the lock's. `None` when it has none (PERSIST by an admin).
    pub fn expiry(&mut self) -> Option<Millis> {
        if let Some(known) = self.expiry {
            return known;
        }
        if self.key.is_null() {
            return None;
        }
        // SAFETY: self.key is an open key.
        let at = unsafe { rm!(RedisModule_GetAbsExpire)(self.key) };
        let expiry = (at >= 0).then_some(at);
        self.expiry = Some(expiry);
        expiry
    }

    /// Stores a new lock (replacing whatever the key held), expiring at `expires_at`. The value
    /// goes first: setting a value drops the key's expiry.
    #[inline]
    pub fn store(&mut self, lock: Box<Lock>, expires_at: Option<Millis>) {
        self.set_value(into_value(lock), expires_at);
    }

    #[inline]
    fn set_value(&mut self, value: *mut std::ffi::c_void, expires_at: Option<Millis>) {
        // A tracked value (moved_values.rs) is freed by the replacement: the tracking moves
        // to the new value first (and back if the server refuses it).
        let replaced = self.tracked_value_here();
        if let Some((old, at)) = &replaced {
            moved_values::relocated(*old, value as usize, at.clone());
        }
        // SAFETY: self.key is open for writing; on success the key owns `value` and frees it
        // with our type's free callback.
        let stored = unsafe { rm!(RedisModule_ModuleTypeSetValue)(self.key, lock_type(), value) };
        if stored != raw::REDISMODULE_OK as i32 {
            if let Some((old, at)) = replaced {
                moved_values::relocated(value as usize, old, at);
            }
            // SAFETY: the server did not take the value: it is still ours to free, once.
            unsafe { crate::glue::server::value::free_value(value) };
            return;
        }
        self.changed = true;
        // Setting a value dropped the key's expiry.
        self.expiry = Some(None);
        if let Some(at) = expires_at {
            self.set_expiry(at);
        }
    }

    /// The address and place of the value here, if moved_values.rs tracks any value at all.
    fn tracked_value_here(&mut self) -> Option<(usize, KeyRef)> {
        if !moved_values::any() {
            return None;
        }
        let old = self.value_pointer().ok()?? as usize;
        // SAFETY: the key's name is live for the running callback.
        let name = unsafe { string_bytes(self.name) };
        Some((old, KeyRef::new(self.ctx.selected_db(), name)))
    }

    /// Sets the key's expiry to the absolute unix ms `at`, after an in-place change.
    #[inline]
    pub fn set_expiry(&mut self, at: Millis) {
        // SAFETY: self.key is open for writing and holds a value.
        let set = unsafe { rm!(RedisModule_SetAbsExpire)(self.key, at) };
        // Refused only without a value: then the expiry is read again if asked for.
        self.expiry = (set == raw::REDISMODULE_OK as i32).then_some(Some(at));
        self.changed = true;
    }

    /// The key's name (a copy), for the lock log.
    fn name_bytes(&self) -> Vec<u8> {
        // SAFETY: the name is live as long as this key handle.
        unsafe { crate::glue::server::entry::string_bytes(self.name) }.to_vec()
    }

    #[inline]
    pub fn delete(&mut self) {
        self.report_sessions_ended();
        // SAFETY: self.key is open for writing.
        unsafe { rm!(RedisModule_DeleteKey)(self.key) };
        self.expiry = Some(None);
        self.changed = true;
    }
}

/// A key opened only to read its lock (LOCK.INFO, the session index's look): it has no way to
/// store, expire or delete, so a read-only command cannot change the keyspace by mistake.
pub struct ReadKey(LockKey);

impl ReadKey {
    pub fn open(ctx: Ctx, name: *mut RedisModuleString) -> ReadKey {
        ReadKey(LockKey::open(ctx, name, raw::REDISMODULE_READ))
    }

    /// As `LockKey::holds`: `None` when the key is empty, WRONGTYPE for another type; holders
    /// of closed sessions left out.
    pub fn holds(&mut self) -> Result<Option<Holds>, LockError> {
        self.0.holds()
    }

    /// As `LockKey::found`: what the key holds, looked at without decoding.
    pub fn found(&mut self) -> Result<Found<'_>, LockError> {
        self.0.found()
    }

    /// The address of the lock value the key holds (compared, never read: moved_values.rs).
    pub fn value_address(&mut self) -> Option<usize> {
        Some(self.0.value_pointer().ok()?? as usize)
    }
}

impl LockKey {
    /// Tells LOCK.OBSERVE's observers of this key (if anyone observes at all) its holders now.
    #[inline]
    fn report_to_observers(&mut self) {
        if observed::anyone_observing() {
            self.tell_observers();
        }
    }

    #[cold]
    #[inline(never)]
    fn tell_observers(&mut self) {
        let now = match self.holds() {
            Ok(Some(holds)) => Snapshot::of(&holds),
            _ => Snapshot::FREE,
        };
        // SAFETY: the key's name is live for the running callback.
        let name = unsafe { string_bytes(self.name) };
        observed::changed(self.ctx.selected_db(), name, now);
    }
}

impl Drop for LockKey {
    #[inline]
    fn drop(&mut self) {
        if self.changed {
            signals::key_modified(self.ctx, self.name);
            self.report_to_observers();
        }
        if !self.key.is_null() {
            // SAFETY: opened by us, closed exactly once.
            unsafe { rm!(RedisModule_CloseKey)(self.key) };
        }
    }
}

/// The expiry (unix ms) the server keeps for `name` in database `db` right now, read without a
/// trace: no access time touched, no keyspace-miss event, no hit or miss counted, nothing
/// expired. `None` when the key has none or is not there. For the unlink callback on servers
/// that call it before they drop the key's expiry (Redis 7.2 and later, Valkey: their
/// `dbGenericDelete` unlinks in two phases and deletes the expiry last; Redis 7.0 deletes it
/// first). `ctx` is left in the database it was in.
pub fn expiry_in_place(ctx: Ctx, db: i32, name: *mut RedisModuleString) -> Option<Millis> {
    let selected = ctx.selected_db();
    ctx.select_db(db);
    let mode = raw::REDISMODULE_READ
        | raw::REDISMODULE_OPEN_KEY_NOTOUCH
        | raw::REDISMODULE_OPEN_KEY_NONOTIFY
        | raw::REDISMODULE_OPEN_KEY_NOSTATS
        | raw::REDISMODULE_OPEN_KEY_NOEXPIRE;
    let expiry = LockKey::open(ctx, name, mode).expiry();
    ctx.select_db(selected);
    expiry
}

/// A server string made from bytes (a key name kept by us), freed on drop.
pub struct OwnedString {
    ctx: Ctx,
    string: *mut RedisModuleString,
}

impl OwnedString {
    pub fn new(ctx: Ctx, bytes: &[u8]) -> OwnedString {
        // SAFETY: ctx is live; the server copies the bytes.
        let string =
            unsafe { rm!(RedisModule_CreateString)(ctx.0, bytes.as_ptr().cast(), bytes.len()) };
        OwnedString { ctx, string }
    }

    pub fn as_ptr(&self) -> *mut RedisModuleString {
        self.string
    }
}

impl Drop for OwnedString {
    fn drop(&mut self) {
        // SAFETY: created by us with this context, freed exactly once.
        unsafe { rm!(RedisModule_FreeString)(self.ctx.0, self.string) };
    }
}
