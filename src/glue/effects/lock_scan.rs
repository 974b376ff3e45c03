//! Iterating the lock keys of a database in SCAN's manner: the server's own `SCAN cursor
//! [MATCH p] COUNT n TYPE rlocklock`, called from inside the module (`RM_Call`). No index of
//! our own: SCAN's guarantees (every key present for the whole iteration is returned at least
//! once; keys may repeat) and costs (O(COUNT) a call, O(N) a full iteration) are the server's.
//! A search for moved values (`find_values`) goes a page per event-loop turn.

use std::ffi::c_char;

use redis_module::raw::{self, RedisModuleCallReply};

use crate::glue::effects::keys::{OwnedString, ReadKey};
use crate::glue::effects::moved_values;
use crate::glue::server::api::rm;
use crate::glue::server::context::Ctx;
use crate::glue::server::key_ref::KeyRef;
use crate::glue::server::timers::{self, propagating_timer};

/// The data type's name as TYPE shows it (hooks/datatype.rs registers it).
const TYPE_NAME: &[u8] = b"rlocklock";

/// One SCAN page: the next cursor ("0" at the end) and the lock keys it returned.
pub struct Page {
    pub cursor: Vec<u8>,
    pub keys: Vec<Vec<u8>>,
}

/// `SCAN cursor [MATCH pattern] COUNT count TYPE rlocklock` in the selected database; `None`
/// if the server refused (a bad cursor).
pub fn page(ctx: Ctx, cursor: &[u8], pattern: Option<&[u8]>, count: u64) -> Option<Page> {
    let count = count.to_string();
    let mut args: Vec<&[u8]> = vec![cursor];
    if let Some(pattern) = pattern {
        args.push(b"MATCH");
        args.push(pattern);
    }
    args.extend([b"COUNT".as_slice(), count.as_bytes(), b"TYPE", TYPE_NAME]);
    let reply = call_scan(ctx, &args);
    if reply.is_null() {
        return None;
    }
    let page = read_page(reply);
    // SAFETY: the reply came from RM_Call and is freed once.
    unsafe { rm!(RedisModule_FreeCallReply)(reply) };
    page
}

/// RM_Call("SCAN", "b...") with 5 or 7 buffer arguments.
fn call_scan(ctx: Ctx, args: &[&[u8]]) -> *mut RedisModuleCallReply {
    let p = |i: usize| args[i].as_ptr().cast::<c_char>();
    let n = |i: usize| args[i].len();
    // SAFETY: ctx is live; every "b" takes a pointer and a length that live for the call.
    unsafe {
        match args.len() {
            5 => rm!(RedisModule_Call)(
                ctx.0,
                c"SCAN".as_ptr(),
                c"bbbbb".as_ptr(),
                p(0),
                n(0),
                p(1),
                n(1),
                p(2),
                n(2),
                p(3),
                n(3),
                p(4),
                n(4),
            ),
            7 => rm!(RedisModule_Call)(
                ctx.0,
                c"SCAN".as_ptr(),
                c"bbbbbbb".as_ptr(),
                p(0),
                n(0),
                p(1),
                n(1),
                p(2),
                n(2),
                p(3),
                n(3),
                p(4),
                n(4),
                p(5),
                n(5),
                p(6),
                n(6),
            ),
            _ => std::ptr::null_mut(),
        }
    }
}

fn reply_bytes(reply: *mut RedisModuleCallReply) -> Option<Vec<u8>> {
    if reply.is_null() {
        return None;
    }
    let mut len = 0usize;
    // SAFETY: reply is a live element of a live reply.
    let ptr = unsafe { rm!(RedisModule_CallReplyStringPtr)(reply, &mut len) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the server gives len bytes at ptr while the reply lives.
    Some(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec())
}

fn read_page(reply: *mut RedisModuleCallReply) -> Option<Page> {
    // SAFETY (all calls): reply is live until the caller frees it; elements live with it.
    unsafe {
        if rm!(RedisModule_CallReplyType)(reply) != raw::REDISMODULE_REPLY_ARRAY as i32
            || rm!(RedisModule_CallReplyLength)(reply) != 2
        {
            return None;
        }
        let cursor = reply_bytes(rm!(RedisModule_CallReplyArrayElement)(reply, 0))?;
        let keys_reply = rm!(RedisModule_CallReplyArrayElement)(reply, 1);
        let len = rm!(RedisModule_CallReplyLength)(keys_reply);
        let keys = (0..len)
            .filter_map(|i| reply_bytes(rm!(RedisModule_CallReplyArrayElement)(keys_reply, i)))
            .collect();
        Some(Page { cursor, keys })
    }
}

/// Every lock key of the selected database, a page at a time (O(N) in its keys).
pub fn for_each_key(ctx: Ctx, mut each: impl FnMut(&[u8])) {
    let mut cursor = b"0".to_vec();
    // Bounded: SCAN ends; this guards a server that would not.
    for _ in 0..100_000_000u64 {
        let Some(page) = page(ctx, &cursor, None, 1000) else {
            return;
        };
        for key in &page.keys {
            each(key);
        }
        if page.cursor == b"0" {
            return;
        }
        cursor = page.cursor;
    }
}

/// What a search calls where it finds a value: the key's database and name, the value's
/// tracking id (moved_values.rs) and the number the search was started with. It runs in a
/// timer that may write and propagate.
pub type FoundValue = fn(Ctx, i32, &[u8], u64, u64);

/// What a search calls once at its end with the tracking ids it did not find and its number.
pub type SearchOver = fn(&[u64], u64);

/// A search for tracked values (moved_values.rs): one SCAN page a turn, database after
/// database, until every value is found or freed; a value still alive when every database is
/// done was moved again while the search ran (SCAN promises only keys that stay put), so the
/// search goes round again: SEARCH_ROUNDS times at most, not counting rounds during which the
/// server moved a wanted value again (a value found once it stops moving).
struct Search {
    wanted: Vec<u64>,
    found: FoundValue,
    over: SearchOver,
    tag: u64,
    db: i32,
    cursor: Vec<u8>,
    round: u32,
    /// moved_values::moves_of the wanted values when this round began.
    moves_at_round: u64,
}

/// Lock keys looked at per turn of a search: a page costs about what a SCAN of that COUNT does.
const SEARCH_PAGE: u64 = 1000;
/// Full passes over the databases a search makes at most.
const SEARCH_ROUNDS: u32 = 3;

thread_local! {
    static SEARCHES: std::cell::RefCell<std::collections::HashMap<u64, Search>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    static NEXT_SEARCH: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// Whether the key at `place` holds the value at `address`.
fn holds_value_at(ctx: Ctx, place: &KeyRef, address: usize) -> bool {
    ctx.select_db(place.db);
    let name = OwnedString::new(ctx, &place.name);
    ReadKey::open(ctx, name.as_ptr()).value_address() == Some(address)
}

/// Where tracked value `id` is, if rlock knows and the key there holds it still.
fn known_place(ctx: Ctx, id: u64) -> Option<KeyRef> {
    let (address, at) = moved_values::place_of(id)?;
    at.filter(|place| holds_value_at(ctx, place, address))
}

/// Finds the lock keys that hold the tracked values `wanted` (ids, moved_values.rs) and calls
/// `found` for each: at once for those freed (dropped) or at a place rlock knows, then, from
/// the next event-loop turn on, by searching every database; `over` gets those not found.
/// O(N) in the server's keys, spread over turns of SEARCH_PAGE lock keys.
pub fn find_values(ctx: Ctx, wanted: Vec<u64>, found: FoundValue, over: SearchOver, tag: u64) {
    let mut search = Search {
        moves_at_round: moved_values::moves_of(&wanted),
        wanted,
        found,
        over,
        tag,
        db: 0,
        cursor: b"0".to_vec(),
        round: 1,
    };
    take_known_places(ctx, &mut search);
    if search.wanted.is_empty() {
        return;
    }
    let id = NEXT_SEARCH.with(|next| next.replace(next.get() + 1));
    SEARCHES.with(|searches| searches.borrow_mut().insert(id, search));
    timers::start(ctx, 0, search_page_due, id);
}

propagating_timer!(search_page_due, "looking for moved locks", search_page);

/// One page of search `id`; arms the next unless the search is over.
fn search_page(ctx: Ctx, id: u64) {
    let Some(mut search) = SEARCHES.with(|searches| searches.borrow_mut().remove(&id)) else {
        return;
    };
    take_known_places(ctx, &mut search);
    if !search.wanted.is_empty() && search_one_page(ctx, &mut search) {
        SEARCHES.with(|searches| searches.borrow_mut().insert(id, search));
        timers::start(ctx, 0, search_page_due, id);
        return;
    }
    (search.over)(&search.wanted, search.tag);
}

/// Drops the wanted values that were freed, and serves those rlock wrote since at a place
/// it knows.
fn take_known_places(ctx: Ctx, search: &mut Search) {
    let mut at_known = Vec::new();
    search.wanted.retain(|&id| {
        if moved_values::place_of(id).is_none() {
            return false;
        }
        match known_place(ctx, id) {
            Some(place) => {
                at_known.push((id, place));
                false
            }
            None => true,
        }
    });
    for (id, place) in at_known {
        (search.found)(ctx, place.db, &place.name, id, search.tag);
    }
}

/// Looks at the next page of `search`; whether there is more to look at.
fn search_one_page(ctx: Ctx, search: &mut Search) -> bool {
    ctx.select_db(search.db);
    let Some(page) = page(ctx, &search.cursor, None, SEARCH_PAGE) else {
        return false;
    };
    let addresses: Vec<(u64, usize)> = search
        .wanted
        .iter()
        .filter_map(|&id| Some((id, moved_values::place_of(id)?.0)))
        .collect();
    for key in &page.keys {
        let name = OwnedString::new(ctx, key);
        let Some(address) = ReadKey::open(ctx, name.as_ptr()).value_address() else {
            continue;
        };
        let Some(&(id, _)) = addresses.iter().find(|(_, a)| *a == address) else {
            continue;
        };
        if let Some(i) = search.wanted.iter().position(|&w| w == id) {
            search.wanted.swap_remove(i);
            (search.found)(ctx, search.db, key, id, search.tag);
            ctx.select_db(search.db);
        }
    }
    if search.wanted.is_empty() {
        return false;
    }
    if page.cursor != b"0" {
        search.cursor = page.cursor;
        return true;
    }
    search.db += 1;
    search.cursor = b"0".to_vec();
    // SAFETY: ctx is the live timer context; a database past the last is refused.
    let exists =
        unsafe { rm!(RedisModule_SelectDb)(ctx.0, search.db) } == raw::REDISMODULE_OK as i32;
    if exists {
        return true;
    }
    search.db = 0;
    let moves = moved_values::moves_of(&search.wanted);
    if moves == search.moves_at_round {
        search.round += 1;
    }
    search.moves_at_round = moves;
    search.round <= SEARCH_ROUNDS
}
