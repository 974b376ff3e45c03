//! What data from outside may do to the module: a token loaded, restored, replayed or saved
//! beyond the ceiling (ten years of clock ahead, core/state/tokens.rs) never raises the token counter,
//! so one crafted payload cannot end every grant; a RESTORE or MIGRATE of such a payload fails
//! and changes nothing; loading keeps the key. And a restored key whose holders carry their own
//! expiries expires with the latest of them, whatever ttl the RESTORE gave it (issue 17, items
//! 2 and 10).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use redis::Value;

/// The largest token there is (2^53 - 1): a counter at it grants nothing more.
const MAX_TOKEN: u64 = (1 << 53) - 1;
/// Tokens are the clock in ms shifted left by this (core/state/tokens.rs).
const CLOCK_SHIFT: u32 = 10;
const TOKEN_BITS: u32 = 53;

/// Where `needle` is in `haystack` (once: a test's owners are unique in its payloads).
fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("{:?} is not in the bytes", String::from_utf8_lossy(needle)))
}

/// How a hold is laid out in saved lock bytes (src/core/stored/encoding.rs).
#[derive(Clone, Copy)]
enum Layout {
    /// A plain lock: owner length (2 bytes), packed token and count (8), owner.
    Plain,
    /// A holder of a multi-holder value: ..., expiry (8), packed token and count (8), owner
    /// length (2), owner.
    Holder,
}

/// Sets the token of `owner`'s hold in saved lock bytes (a DUMP payload or an uncompressed RDB
/// file).
fn set_token(bytes: &mut [u8], layout: Layout, owner: &[u8], token: u64) {
    let before_owner = match layout {
        Layout::Plain => 8,
        Layout::Holder => 10,
    };
    let packed_at = position(bytes, owner) - before_owner;
    let field: [u8; 8] = bytes[packed_at..packed_at + 8].try_into().unwrap();
    let count = u64::from_le_bytes(field) >> TOKEN_BITS;
    let packed = (count << TOKEN_BITS) | token;
    bytes[packed_at..packed_at + 8].copy_from_slice(&packed.to_le_bytes());
}

/// Sets the absolute expiry (unix ms) of `owner`'s hold in the tagged bytes of a multi-holder
/// value: it comes before the packed token and count.
fn set_holder_expiry(bytes: &mut [u8], owner: &[u8], expires_at: i64) {
    let at = position(bytes, owner) - 18;
    bytes[at..at + 8].copy_from_slice(&expires_at.to_le_bytes());
}

/// A token that honest data can carry: `ms` of clock after the server's clock now.
fn token_ahead(con: &mut redis::Connection, ms: i64) -> u64 {
    ((server_ms(con) + ms) as u64) << CLOCK_SHIFT
}

/// `LOCK.ACQUIRE key owner ttl`: a token that is the clock's worth (so far from exhausted),
/// taken `before` and `after` the call by the server's clock.
fn acquire_at_the_clock(con: &mut redis::Connection, key: &str, owner: &str) -> u64 {
    let before = token_ahead(con, 0);
    let token = int(
        call!(con, "LOCK.ACQUIRE", key, owner, 60_000),
        "LOCK.ACQUIRE",
    ) as u64;
    let after = token_ahead(con, 1);
    assert!(
        (before..after + 1024).contains(&token),
        "a grant at the clock's floor: {token} not within {before}..{after}"
    );
    token
}

fn refused_count(server: &Server) -> u64 {
    server
        .info_field("lock", "lock_tokens_refused")
        .expect("INFO lock_tokens_refused")
        .parse()
        .expect("a number")
}

/// A key held by two shared holders (`<key>-reader-1` for 60 s, `<key>-reader-2` for 30 s).
fn shared_key(con: &mut redis::Connection, key: &str, ttls: [u64; 2]) -> [String; 2] {
    let owners = [format!("{key}-reader-1"), format!("{key}-reader-2")];
    for (owner, ttl) in owners.iter().zip(ttls) {
        int(
            call!(con, "LOCK.ACQUIRE", key, owner.as_str(), ttl, "SHARED"),
            "a shared hold",
        );
    }
    owners
}

#[test]
fn a_restored_token_beyond_the_bound_is_refused_and_every_later_grant_goes_on() {
    let server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    let first = acquire_at_the_clock(&mut con, "k", "holder-1");
    let mut plain = dump(&mut con, "k");
    set_token(&mut plain, Layout::Plain, b"holder-1", MAX_TOKEN);
    let owners = shared_key(&mut con, "s", [60_000, 30_000]);
    let mut shared = dump(&mut con, "s");
    set_token(&mut shared, Layout::Holder, owners[1].as_bytes(), MAX_TOKEN);
    for (what, payload) in [("a plain lock", plain), ("shared holds", shared)] {
        let refused = error(
            call!(&mut con, "RESTORE", "poisoned", 0, with_checksum(payload)),
            what,
        );
        assert!(refused.starts_with("ERR"), "{what}: {refused}");
        assert_eq!(exists(&mut con, "poisoned"), 0, "{what}: nothing stored");
    }
    assert_eq!(refused_count(&server), 2);
    assert!(
        server.log().contains("beyond the bound"),
        "the log says why the payload was refused"
    );
    call!(&mut con, "DEL", "k", "s").expect("DEL");
    call!(&mut con, "FLUSHALL").expect("FLUSHALL");
    let next = acquire_at_the_clock(&mut con, "k", "holder-2");
    assert!(next > first);
}

#[test]
fn a_restored_token_within_the_bound_raises_the_counter() {
    // A token an hour ahead of the clock (a node after six promotions) is honest.
    let server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    acquire_at_the_clock(&mut con, "k", "holder-1");
    let ahead = token_ahead(&mut con, 3_600_000);
    let mut payload = dump(&mut con, "k");
    set_token(&mut payload, Layout::Plain, b"holder-1", ahead);
    ok(
        call!(&mut con, "RESTORE", "copy", 0, with_checksum(payload)),
        "RESTORE",
    );
    assert_eq!(
        lock_info(&mut con, "copy").expect("restored").token as u64,
        ahead
    );
    let next = int(
        call!(&mut con, "LOCK.ACQUIRE", "new", "me", 60_000),
        "acquire",
    );
    assert!(next as u64 > ahead);
    assert_eq!(refused_count(&server), 0);
}

#[test]
fn a_restored_holder_expiring_beyond_any_ttl_is_refused() {
    let server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    let owners = shared_key(&mut con, "s", [60_000, 30_000]);
    let good = dump(&mut con, "s");
    // 30 days is the longest ttl; a year from now no grant reaches, nor does "forever".
    let year_ahead = server_ms(&mut con) + 365 * 24 * 3600 * 1000;
    for expires_at in [year_ahead, i64::MAX] {
        let mut payload = good.clone();
        set_holder_expiry(&mut payload, owners[0].as_bytes(), expires_at);
        let refused = error(
            call!(&mut con, "RESTORE", "far", 0, with_checksum(payload)),
            "a holder expiring beyond any ttl",
        );
        assert!(refused.starts_with("ERR"), "{refused}");
        assert_eq!(exists(&mut con, "far"), 0, "nothing stored");
    }
    ok(
        call!(&mut con, "RESTORE", "copy", 0, good),
        "the unchanged payload restores",
    );
}

/// The incremental AOF file the server appends to now (Redis 7's multi-part AOF).
fn incremental_aof(dir: &Path) -> PathBuf {
    let aof_dir = dir.join("appendonlydir");
    let manifest = fs::read_to_string(aof_dir.join("appendonly.aof.manifest")).expect("manifest");
    // Lines of `key value` pairs: `file <name> seq <n> type <b|i> [startoffset <n> ...]`.
    let name = manifest
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.chunks(2).any(|pair| pair == ["type", "i"]))
        .filter_map(|words| words.get(1).map(|name| name.to_string()))
        .next_back()
        .expect("an incremental file in the manifest");
    aof_dir.join(name)
}

/// `args` as one command in the AOF's RESP.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        bytes.extend_from_slice(arg);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// Stops `server`, appends `commands` to its AOF and starts it again from it.
fn replay_from_aof(server: &mut Server, commands: &[Vec<u8>]) {
    server.stop();
    let path = incremental_aof(server.dir());
    let mut aof = fs::read(&path).expect("read the AOF");
    for command in commands {
        aof.extend_from_slice(command);
    }
    fs::write(&path, aof).expect("write the AOF");
    server.restart();
}

/// A server whose AOF replayed `LOCK.TOKENS` and a `LOCK.APPLY` of key `poisoned`, both with
/// the largest token there is, and a `LOCK.APPLY` of key `too-many` with a hold count above
/// the most a lock can hold (2047).
fn server_with_a_poisoned_aof() -> Server {
    let mut server = Server::start_with(&["--appendonly", "yes"]);
    {
        let mut con = server.conn();
        acquire_at_the_clock(&mut con, "honest", "holder-1");
    }
    let max = MAX_TOKEN.to_string();
    let max = max.as_bytes();
    replay_from_aof(
        &mut server,
        &[
            resp(&[b"LOCK.TOKENS", max]),
            resp(&[
                b"LOCK.APPLY",
                b"poisoned",
                b"holder-p",
                b"1",
                b"0",
                max,
                max,
            ]),
            resp(&[
                b"LOCK.APPLY",
                b"too-many",
                b"holder-c",
                b"5000",
                b"0",
                b"7",
                b"7",
            ]),
        ],
    );
    server
}

#[test]
fn a_replayed_token_beyond_the_bound_keeps_its_key_but_leaves_the_counter_alone() {
    let server = server_with_a_poisoned_aof();
    let mut con = server.conn();
    let poisoned = lock_info(&mut con, "poisoned").expect("the replayed key is kept");
    assert_eq!(poisoned.token as u64, MAX_TOKEN);
    assert_eq!(poisoned.owner, b"holder-p");
    acquire_at_the_clock(&mut con, "new", "holder-2");
    assert_eq!(refused_count(&server), 2, "LOCK.TOKENS and LOCK.APPLY");
    assert!(server.log().contains("beyond the bound"));
    assert_eq!(
        exists(&mut con, "too-many"),
        0,
        "a count no lock can hold is refused, not cut down"
    );
}

#[test]
fn migrate_of_a_lock_with_a_token_beyond_the_bound_fails_and_leaves_it_on_the_source() {
    let source = server_with_a_poisoned_aof();
    let target = Server::start();
    let mut con = source.conn();
    let refused = error(
        call!(
            &mut con,
            "MIGRATE",
            "127.0.0.1",
            target.port(),
            "poisoned",
            0,
            5000
        ),
        "MIGRATE",
    );
    assert!(refused.contains("ERR"), "{refused}");
    assert_eq!(
        lock_info(&mut con, "poisoned")
            .expect("still on the source")
            .token as u64,
        MAX_TOKEN
    );
    let mut target_con = target.conn();
    assert_eq!(exists(&mut target_con, "poisoned"), 0);
    assert_eq!(refused_count(&target), 1);
    acquire_at_the_clock(&mut target_con, "new", "holder-2");
}

/// An RDB length-encoded unsigned as RM_SaveUnsigned writes it: the opcode 2, then the value
/// (one byte below 64, else 0x81 and 8 bytes big-endian above 2^32).
fn saved_unsigned(value: u64) -> Vec<u8> {
    match value {
        0..=63 => vec![2, value as u8],
        _ if value > u64::from(u32::MAX) => [&[2u8, 0x81][..], &value.to_be_bytes()].concat(),
        _ => panic!("no test saves {value}"),
    }
}

/// `bytes` with the first `from` replaced by `to`.
fn replace_once(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = position(bytes, from);
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

#[test]
fn a_node_restarted_from_a_poisoned_rdb_file_comes_back_at_the_clocks_floor() {
    // The file a node poisoned before this bound existed saved: a key holding the largest
    // token, the counter at it, and the lead that gave (2^53 less the clock).
    let mut server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    let honest = acquire_at_the_clock(&mut con, "honest", "holder-1");
    acquire_at_the_clock(&mut con, "poisoned", "holder-p");
    ok(call!(&mut con, "SAVE"), "SAVE");
    let last: u64 = server
        .info_field("lock", "lock_last_token")
        .expect("lock_last_token")
        .parse()
        .expect("a number");
    assert_eq!(
        server.info_field("lock", "lock_token_lead_ms").as_deref(),
        Some("0")
    );
    drop(con);
    server.stop();
    let path = server.dir().join("dump.rdb");
    let rdb = fs::read(&path).expect("dump.rdb");
    let saved_counter = [saved_unsigned(last), saved_unsigned(0)].concat();
    let poisoned_lead = MAX_TOKEN - (last >> CLOCK_SHIFT << CLOCK_SHIFT);
    let poisoned_counter = [saved_unsigned(MAX_TOKEN), saved_unsigned(poisoned_lead)].concat();
    let mut rdb = replace_once(&rdb, &saved_counter, &poisoned_counter);
    set_token(&mut rdb, Layout::Plain, b"holder-p", MAX_TOKEN);
    fs::write(&path, with_checksum(rdb)).expect("write dump.rdb");
    server.restart();
    let mut con = server.conn();
    let poisoned = lock_info(&mut con, "poisoned").expect("the loaded key is kept");
    assert_eq!(poisoned.token as u64, MAX_TOKEN);
    assert_eq!(
        lock_info(&mut con, "honest").expect("kept").token as u64,
        honest
    );
    assert_eq!(
        server.info_field("lock", "lock_token_lead_ms").as_deref(),
        Some("0")
    );
    let next = acquire_at_the_clock(&mut con, "new", "holder-2");
    assert!(next > honest);
    assert_eq!(
        refused_count(&server),
        2,
        "the saved counter and the key's token"
    );
    assert!(server.log().contains("beyond the bound"));
}

#[test]
fn a_multi_holder_key_restored_without_a_ttl_expires_with_its_latest_holder() {
    let server = Server::start();
    let replica = Server::start();
    replica.replicate_from(&server);
    let mut con = server.conn();
    shared_key(&mut con, "s", [60_000, 30_000]);
    let latest = pexpiretime(&mut con, "s");
    assert!(latest > 0);
    let payload = dump(&mut con, "s");
    // In one transaction, so that all three are looked at together: none, a later and an
    // earlier expiry than the latest holder's.
    let replies = {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("RESTORE")
            .arg("no-ttl")
            .arg(0)
            .arg(&payload)
            .cmd("RESTORE")
            .arg("later")
            .arg(3_600_000)
            .arg(&payload)
            .cmd("RESTORE")
            .arg("earlier")
            .arg(10_000)
            .arg(&payload)
            .cmd("PEXPIRETIME")
            .arg("earlier");
        let replies: Vec<Value> = pipe.query(&mut con).expect("MULTI/EXEC");
        replies
    };
    let earlier = match replies.last() {
        Some(Value::Int(at)) => *at,
        other => panic!("PEXPIRETIME earlier answered {other:?}"),
    };
    assert!(earlier < latest);
    for key in ["no-ttl", "later"] {
        wait_until(&format!("{key} to expire with its latest holder"), || {
            pexpiretime(&mut con, key) == latest
        });
    }
    assert_eq!(
        pexpiretime(&mut con, "earlier"),
        earlier,
        "an earlier expiry stays"
    );
    let mut replica_con = replica.conn();
    wait_until(
        "the replica to expire it with its latest holder too",
        || pexpiretime(&mut replica_con, "no-ttl") == latest,
    );
}

#[test]
fn a_multi_holder_key_restored_after_every_holder_expired_goes() {
    let server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    let owners = shared_key(&mut con, "s", [60_000, 30_000]);
    let mut payload = dump(&mut con, "s");
    // Both holders' expiries a second in the past, as in a payload dumped long ago.
    let past = server_ms(&mut con) - 1000;
    for owner in &owners {
        set_holder_expiry(&mut payload, owner.as_bytes(), past);
    }
    ok(
        call!(&mut con, "RESTORE", "gone", 0, with_checksum(payload)),
        "RESTORE",
    );
    wait_until("the restored key to go", || exists(&mut con, "gone") == 0);
    server.wait_for_info("lock", "lock_held", "1");
    nil(call!(&mut con, "LOCK.INFO", "gone"), "LOCK.INFO");
}

#[test]
fn a_plain_lock_restored_without_a_ttl_stays_permanent() {
    // Its holder's expiry is the key's: RESTORE without a ttl makes it permanent, as PERSIST.
    let server = Server::start();
    let mut con = server.conn();
    acquire_at_the_clock(&mut con, "k", "holder-1");
    let payload = dump(&mut con, "k");
    // Together with a multi-holder key, whose fix-up is then known to have run.
    shared_key(&mut con, "s", [60_000, 30_000]);
    let latest = pexpiretime(&mut con, "s");
    let shared = dump(&mut con, "s");
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("RESTORE")
        .arg("plain")
        .arg(0)
        .arg(&payload)
        .cmd("RESTORE")
        .arg("shared")
        .arg(0)
        .arg(&shared);
    let _: Vec<Value> = pipe.query(&mut con).expect("MULTI/EXEC");
    wait_until("the shared copy to expire with its latest holder", || {
        pexpiretime(&mut con, "shared") == latest
    });
    assert_eq!(pexpiretime(&mut con, "plain"), -1);
    assert_eq!(lock_info(&mut con, "plain").expect("held").ttl, -1);
}
