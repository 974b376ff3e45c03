//! Committed fixtures written by an earlier build (tests/fixtures/, see its README.md): a DUMP
//! payload of every lock shape and one RDB file with several locks and the token counter. Every
//! later build must load them as the locks they were: the same owners, counts, tokens, holders,
//! mode, limit and session flag, held (each holder can reenter, nobody else can take the key),
//! expiring when they did, and with every later token above the stored ones.
//!
//! Tokens and expiries are absolute: the fixtures' locks expire in the year 2100 or never (a
//! permanent lock, and the holders in a payload of holds, which a RESTORE refuses to take
//! expiring far ahead), so the same expectations hold whenever the test runs. `make_fixtures`
//! (ignored) makes them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Where the fixtures are, from the repo root.
const FIXTURES: &str = "tests/fixtures";
/// Every DUMP fixture, by file name (`tests/fixtures/dump/<shape>.txt`).
const SHAPES: [&str; 7] = [
    "exclusive",
    "reentered",
    "shared",
    "limit",
    "session",
    "permanent",
    "large-owner",
];
/// 2100-01-01T00:00:00Z in unix ms: when the fixtures' locks expire.
const FAR_EXPIRY: i64 = 4_102_444_800_000;
/// Holders of one key expire this far apart, so that a test tells them apart.
const HOLDER_EXPIRY_STEP: i64 = 60_000;
const TTL: u64 = 600_000;

// ---------------------------------------------------------------------------------------
// The fixture files' format (tests/fixtures/README.md): `#` comments, then one `name value`
// per line; `key` starts the description of a key.

/// A fixture file: its keys and, for the RDB file, the token counter saved with them.
#[derive(Debug, Default)]
struct FixtureFile {
    /// The last token the saving server had handed out (RDB aux data).
    last_token: Option<i64>,
    /// How far its tokens ran ahead of its clock, in ms (RDB aux data).
    token_lead_ms: Option<i64>,
    keys: Vec<KeyFixture>,
}

/// One lock key as it was saved.
#[derive(Debug, Default)]
struct KeyFixture {
    key: String,
    /// The key's absolute expiry (unix ms); `None`: permanent.
    expires_at: Option<i64>,
    /// As `LOCK.INFO` names it: `exclusive`, `shared` or `limit`.
    mode: String,
    limit: Option<i64>,
    holders: Vec<HolderFixture>,
    /// The DUMP payload (DUMP fixtures only).
    payload: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HolderFixture {
    owner: Vec<u8>,
    count: i64,
    token: i64,
    session: bool,
    /// The holder's absolute expiry (unix ms); `None`: never.
    expires_at: Option<i64>,
}

impl FixtureFile {
    fn read(path: &Path) -> FixtureFile {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut file = FixtureFile::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line.split_once(' ').unwrap_or((line, ""));
            file.take_line(name, value)
                .unwrap_or_else(|| panic!("{}: cannot read the line {line:?}", path.display()));
        }
        file
    }

    fn take_line(&mut self, name: &str, value: &str) -> Option<()> {
        if name == "key" {
            self.keys.push(KeyFixture {
                key: value.to_string(),
                ..KeyFixture::default()
            });
            return Some(());
        }
        if let Some(counter) = match name {
            "last-token" => Some(&mut self.last_token),
            "token-lead-ms" => Some(&mut self.token_lead_ms),
            _ => None,
        } {
            *counter = Some(value.parse().ok()?);
            return Some(());
        }
        let key = self.keys.last_mut()?;
        match name {
            "expires-at" => key.expires_at = parse_expiry(value)?,
            "mode" => key.mode = value.to_string(),
            "limit" => key.limit = Some(value.parse().ok()?),
            "holder" => key.holders.push(HolderFixture::parse(value)?),
            "payload" => key.payload = Some(unhex(value)?),
            _ => return None,
        }
        Some(())
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some(last) = self.last_token {
            out += &format!("last-token {last}\n");
        }
        if let Some(lead) = self.token_lead_ms {
            out += &format!("token-lead-ms {lead}\n");
        }
        for key in &self.keys {
            out += &key.render();
        }
        out
    }
}

impl KeyFixture {
    fn render(&self) -> String {
        let mut out = format!("key {}\n", self.key);
        out += &format!("expires-at {}\n", render_expiry(self.expires_at));
        out += &format!("mode {}\n", self.mode);
        if let Some(limit) = self.limit {
            out += &format!("limit {limit}\n");
        }
        for holder in &self.holders {
            out += &format!("holder {}\n", holder.render());
        }
        if let Some(payload) = &self.payload {
            out += &format!("payload {}\n", hex(payload));
        }
        out
    }

    fn max_token(&self) -> i64 {
        self.holders.iter().map(|h| h.token).max().unwrap_or(0)
    }
}

impl HolderFixture {
    /// `owner=<hex> count=<n> token=<n> session=<0|1> expires-at=<unix ms|never>`.
    fn parse(text: &str) -> Option<HolderFixture> {
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        Some(HolderFixture {
            owner: unhex(field("owner")?)?,
            count: field("count")?.parse().ok()?,
            token: field("token")?.parse().ok()?,
            session: match field("session")? {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            expires_at: parse_expiry(field("expires-at")?)?,
        })
    }

    fn render(&self) -> String {
        format!(
            "owner={} count={} token={} session={} expires-at={}",
            hex(&self.owner),
            self.count,
            self.token,
            u8::from(self.session),
            render_expiry(self.expires_at)
        )
    }
}

fn parse_expiry(text: &str) -> Option<Option<i64>> {
    match text {
        "never" => Some(None),
        ms => ms.parse().ok().map(Some),
    }
}

fn render_expiry(expires_at: Option<i64>) -> String {
    expires_at.map_or("never".into(), |at| at.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn fixture_path(relative: &str) -> PathBuf {
    repo_root().join(FIXTURES).join(relative)
}

fn dump_fixture(shape: &str) -> KeyFixture {
    let path = fixture_path(&format!("dump/{shape}.txt"));
    let mut file = FixtureFile::read(&path);
    assert_eq!(file.keys.len(), 1, "{} describes one key", path.display());
    let key = file.keys.remove(0);
    assert!(key.payload.is_some(), "{} has no payload", path.display());
    key
}

// ---------------------------------------------------------------------------------------
// What a loaded lock must be

/// A holder as `LOCK.INFO` shows it now.
#[derive(Debug)]
struct SeenHolder {
    owner: Vec<u8>,
    count: i64,
    ttl: i64,
    token: i64,
    session: bool,
}

/// `LOCK.INFO key` in the form `expected.mode` calls for: (limit, waiters, holders).
fn seen_holders(
    con: &mut redis::Connection,
    expected: &KeyFixture,
) -> (Option<i64>, i64, Vec<SeenHolder>) {
    let key = &expected.key;
    if expected.mode == "exclusive" {
        let info = lock_info(con, key).unwrap_or_else(|| panic!("{key} is not held"));
        let holder = SeenHolder {
            owner: info.owner,
            count: info.count,
            ttl: info.ttl,
            token: info.token,
            session: info.session,
        };
        return (None, info.waiters, vec![holder]);
    }
    let info = holds(con, key);
    assert_eq!(info.mode, expected.mode, "{key}: LOCK.INFO mode");
    let holders = info
        .holders
        .into_iter()
        .map(|(owner, (count, ttl, token, session))| SeenHolder {
            owner: owner.into_bytes(),
            count,
            ttl,
            token,
            session: session == 1,
        })
        .collect();
    (info.limit, info.waiters, holders)
}

/// `key` is the lock `expected` describes: its type, expiry and every holder's owner, count,
/// token, session flag and ttl (between the expiry and the server's clock before and after).
fn assert_loaded(con: &mut redis::Connection, expected: &KeyFixture) {
    let key = &expected.key;
    let type_reply = call!(con, "TYPE", key).expect("TYPE");
    assert_eq!(text(&type_reply).as_deref(), Some(LOCK_TYPE_NAME), "{key}");
    assert_eq!(
        pexpiretime(con, key),
        expected.expires_at.unwrap_or(-1),
        "{key}: the key's expiry"
    );
    let before = server_ms(con);
    let (limit, waiters, seen) = seen_holders(con, expected);
    let after = server_ms(con);
    assert_eq!(
        (limit, waiters),
        (expected.limit, 0),
        "{key}: limit, waiters"
    );
    assert_eq!(
        seen.len(),
        expected.holders.len(),
        "{key}: holders {seen:?}"
    );
    for holder in &expected.holders {
        let found = seen
            .iter()
            .find(|seen| seen.owner == holder.owner)
            .unwrap_or_else(|| panic!("{key}: no holder {:?} in {seen:?}", holder.owner));
        assert_eq!(
            (found.count, found.token, found.session),
            (holder.count, holder.token, holder.session),
            "{key}: count, token, session of {:?}",
            String::from_utf8_lossy(&holder.owner)
        );
        match holder.expires_at {
            None => assert_eq!(found.ttl, -1, "{key}: a holder that never expires"),
            Some(at) => assert!(
                (at - after..=at - before).contains(&found.ttl),
                "{key}: ttl {} of a holder expiring at {at}, seen between {before} and {after}",
                found.ttl
            ),
        }
    }
}

/// The loaded holds are live: each holder reenters (count + 1, answered as such) and another
/// owner cannot take the key.
fn assert_held(con: &mut redis::Connection, expected: &KeyFixture) {
    let key = &expected.key;
    assert_eq!(
        try_acquire(con, key, "fixture-intruder", TTL),
        None,
        "{key}: another owner took a held key"
    );
    for holder in &expected.holders {
        assert_eq!(
            int(
                call!(con, "LOCK.REENTER", key, &holder.owner),
                "LOCK.REENTER"
            ),
            holder.count + 1,
            "{key}: the holder's reentry"
        );
    }
}

/// The counter took `stored` in, and a token granted now is above it: that token.
fn assert_next_token_above(con: &mut redis::Connection, stored: i64) -> i64 {
    let last = info_int(con, "lock", "lock_last_token");
    assert!(
        last >= stored,
        "lock_last_token {last} below a loaded token {stored}"
    );
    let next = acquire(con, "fixture:next", "fixture-next", TTL);
    assert!(next > stored, "token {next} not above the loaded {stored}");
    next
}

/// RESTOREs the fixture's payload on a server of its own (with the key's expiry, as MIGRATE
/// does) and checks that it loaded as the lock it was: the fixture and the server.
fn restore_and_check(shape: &str) -> (KeyFixture, Server) {
    let expected = dump_fixture(shape);
    let server = Server::start();
    let mut con = server.conn();
    restore(&mut con, &expected);
    assert_loaded(&mut con, &expected);
    assert_next_token_above(&mut con, expected.max_token());
    assert_held(&mut con, &expected);
    (expected, server)
}

fn restore(con: &mut redis::Connection, fixture: &KeyFixture) {
    let payload = fixture.payload.as_deref().expect("a payload");
    let reply = match fixture.expires_at {
        Some(at) => call!(con, "RESTORE", &fixture.key, at, payload, "ABSTTL"),
        None => call!(con, "RESTORE", &fixture.key, 0, payload),
    };
    ok(reply, &format!("RESTORE {}", fixture.key));
}

fn only_holder(fixture: &KeyFixture) -> &HolderFixture {
    assert_eq!(fixture.holders.len(), 1, "{}: one holder", fixture.key);
    &fixture.holders[0]
}

#[test]
fn every_dump_fixture_is_loaded_by_a_test() {
    let dir = fixture_path("dump");
    let mut found: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a dir entry").file_name())
        .filter_map(|name| name.to_str()?.strip_suffix(".txt").map(String::from))
        .collect();
    found.sort();
    let mut shapes = SHAPES.map(String::from).to_vec();
    shapes.sort();
    assert_eq!(found, shapes);
}

#[test]
fn an_exclusive_lock_loads() {
    let (fixture, _server) = restore_and_check("exclusive");
    assert_eq!(fixture.mode, "exclusive");
    let holder = only_holder(&fixture);
    assert_eq!((holder.count, holder.session), (1, false));
    assert_eq!(fixture.expires_at, Some(FAR_EXPIRY));
}

#[test]
fn a_reentered_lock_loads_with_its_count() {
    let (fixture, _server) = restore_and_check("reentered");
    assert_eq!(fixture.mode, "exclusive");
    assert!(only_holder(&fixture).count > 1, "{fixture:?}");
}

#[test]
fn a_shared_lock_loads_every_reader_with_its_own_token_and_expiry() {
    let (fixture, _server) = restore_and_check("shared");
    assert_eq!((fixture.mode.as_str(), fixture.limit), ("shared", None));
    assert!(fixture.holders.len() >= 2, "{fixture:?}");
    assert!(
        fixture.holders.iter().any(|h| h.count > 1),
        "a reentered reader"
    );
    assert_never_expires(&fixture);
}

#[test]
fn a_semaphore_loads_its_limit_and_every_permit() {
    let (fixture, _server) = restore_and_check("limit");
    assert_eq!(fixture.mode, "limit");
    let limit = fixture.limit.expect("a limit");
    let permits = fixture.holders.len() as i64;
    assert!(
        (2..limit).contains(&permits),
        "{permits} of {limit} permits"
    );
    assert_never_expires(&fixture);
}

#[test]
fn a_session_hold_loads_with_its_flag_and_bound_to_no_connection() {
    let (fixture, _server) = restore_and_check("session");
    assert_eq!(fixture.mode, "exclusive");
    assert!(only_holder(&fixture).session);
    assert_never_expires(&fixture);
    // Restored on a connection that then closes: the hold stays (its connection was another
    // process's), ending only by its ttl, a release or DEL.
    let server = Server::start();
    let mut watcher = server.conn();
    let clients = |con: &mut redis::Connection| info_int(con, "clients", "connected_clients");
    let alone = clients(&mut watcher);
    {
        let mut con = server.conn();
        restore(&mut con, &fixture);
    }
    wait_until("the restoring connection to close", || {
        clients(&mut watcher) == alone
    });
    assert_loaded(&mut watcher, &fixture);
}

#[test]
fn a_permanent_lock_loads_without_expiry() {
    let (fixture, server) = restore_and_check("permanent");
    assert_eq!(
        (fixture.mode.as_str(), fixture.expires_at),
        ("exclusive", None)
    );
    assert_eq!(only_holder(&fixture).expires_at, None);
    assert_eq!(pttl(&mut server.conn(), &fixture.key), -1);
}

#[test]
fn a_lock_with_the_largest_owner_loads() {
    let (fixture, _server) = restore_and_check("large-owner");
    assert_eq!(only_holder(&fixture).owner.len(), 1024);
}

/// A payload of holds whose holders never expire (a RESTORE refuses one expiring far ahead),
/// so that the same expectations hold in any later year.
fn assert_never_expires(fixture: &KeyFixture) {
    assert_eq!(fixture.expires_at, None, "{}", fixture.key);
    assert!(fixture.holders.iter().all(|h| h.expires_at.is_none()));
}

/// The holders of a key expire at different moments, so `assert_loaded` checked each one's.
fn assert_distinct_expiries(fixture: &KeyFixture) {
    let mut expiries: Vec<_> = fixture.holders.iter().map(|h| h.expires_at).collect();
    expiries.sort();
    expiries.dedup();
    assert_eq!(expiries.len(), fixture.holders.len(), "{fixture:?}");
}

/// Copies the RDB fixture into a server's fresh temp dir (as `locks.rdb`).
fn place_rdb(dir: &Path) {
    let from = fixture_path("rdb/locks.rdb");
    fs::copy(&from, dir.join("locks.rdb"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
}

#[test]
fn the_rdb_file_loads_every_lock_and_the_token_counter() {
    let expected = FixtureFile::read(&fixture_path("rdb/locks.txt"));
    let server = Server::start_options(Options {
        load_module: true,
        args: vec!["--dbfilename".into(), "locks.rdb".into()],
        prepare_dir: Some(place_rdb),
        ..Options::default()
    });
    let mut con = server.conn();
    let dbsize = int(call!(&mut con, "DBSIZE"), "DBSIZE");
    assert_eq!(
        dbsize,
        expected.keys.len() as i64,
        "the keys (a released one stays gone)"
    );
    for key in &expected.keys {
        assert_loaded(&mut con, key);
        if key.mode != "exclusive" {
            assert_distinct_expiries(key);
        }
    }
    // The saved counter is above every key's token (its last token was released), and its
    // lead (a promotion's) keeps tokens ahead of the clock: both come from the aux data.
    let last_token = expected.last_token.expect("last-token");
    let lead_ms = expected.token_lead_ms.expect("token-lead-ms");
    assert!(expected.keys.iter().all(|key| key.max_token() < last_token));
    let lead_now = info_int(&mut con, "lock", "lock_token_lead_ms");
    assert!(
        lead_now >= lead_ms,
        "token lead {lead_now} ms, saved {lead_ms} ms"
    );
    let clock_before = server_ms(&mut con);
    let next = assert_next_token_above(&mut con, last_token);
    assert!(
        next >= (clock_before + lead_ms) << 10,
        "token {next} below the clock plus the saved lead"
    );
    for key in &expected.keys {
        assert_held(&mut con, key);
    }
}

// ---------------------------------------------------------------------------------------
// Re-making the fixtures (tests/fixtures/README.md)

/// A lock shape: the commands that make it on key `{key}` (one connection, kept open until it
/// is dumped, so a session hold is live when it is).
struct Shape {
    name: &'static str,
    about: &'static str,
    commands: Vec<Vec<Vec<u8>>>,
    /// Also saved in the RDB fixture (the large owner is left out to keep that file small).
    in_rdb: bool,
}

fn args(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|arg| arg.as_bytes().to_vec()).collect()
}

/// 1024 bytes (`lock.max-owner-bytes`' default and largest), every byte value among them.
fn large_owner() -> Vec<u8> {
    (0..1024u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn shapes() -> Vec<Shape> {
    let far = FAR_EXPIRY.to_string();
    let far = far.as_str();
    let ttl = TTL.to_string();
    let ttl = ttl.as_str();
    let acquire = |owner: &str, options: &[&str]| {
        let mut command = args(&["LOCK.ACQUIRE", "{key}", owner, ttl]);
        command.extend(args(options));
        command
    };
    let reenter = |owner: &str| args(&["LOCK.REENTER", "{key}", owner]);
    let expire_far = args(&["PEXPIREAT", "{key}", far]);
    let mut large = acquire("", &[]);
    large[2] = large_owner();
    vec![
        Shape {
            name: "exclusive",
            about: "an exclusive lock held once",
            commands: vec![acquire("owner-exclusive", &[]), expire_far.clone()],
            in_rdb: true,
        },
        Shape {
            name: "reentered",
            about: "an exclusive lock reentered (count 3)",
            commands: vec![
                acquire("owner-reentered", &[]),
                acquire("owner-reentered", &[]),
                reenter("owner-reentered"),
                expire_far.clone(),
            ],
            in_rdb: true,
        },
        Shape {
            name: "shared",
            about: "a shared lock of three readers, one reentered",
            commands: vec![
                acquire("reader-1", &["SHARED"]),
                acquire("reader-2", &["SHARED"]),
                acquire("reader-3", &["SHARED"]),
                reenter("reader-1"),
            ],
            in_rdb: true,
        },
        Shape {
            name: "limit",
            about: "a semaphore (LIMIT 3) with two permits held, one reentered",
            commands: vec![
                acquire("permit-1", &["LIMIT", "3"]),
                acquire("permit-2", &["LIMIT", "3"]),
                reenter("permit-2"),
            ],
            in_rdb: true,
        },
        Shape {
            name: "session",
            about: "an exclusive session hold, reentered (its connection id is saved too)",
            commands: vec![
                acquire("owner-session", &["SESSION"]),
                reenter("owner-session"),
            ],
            in_rdb: true,
        },
        Shape {
            name: "permanent",
            about: "an exclusive lock made permanent by an admin",
            commands: vec![acquire("owner-permanent", &[]), args(&["PERSIST", "{key}"])],
            in_rdb: true,
        },
        Shape {
            name: "large-owner",
            about: "an exclusive lock whose owner is 1024 bytes (i * 7 mod 256 for i in 0..1024)",
            commands: vec![large, expire_far],
            in_rdb: false,
        },
    ]
}

/// Runs `command` with `{key}` replaced by `key`.
fn run_shape_command(con: &mut redis::Connection, key: &str, command: &[Vec<u8>]) {
    let mut cmd = redis::cmd(std::str::from_utf8(&command[0]).expect("a command name"));
    for arg in &command[1..] {
        if arg == b"{key}" {
            cmd.arg(key);
        } else {
            cmd.arg(arg.as_slice());
        }
    }
    run(con, &cmd).unwrap_or_else(|e| panic!("{}: {e}", describe(key, command)));
}

/// A command as the fixture's comment shows it (an argument that is not plain text by its size).
fn describe(key: &str, command: &[Vec<u8>]) -> String {
    let shown = |arg: &Vec<u8>| match std::str::from_utf8(arg) {
        Ok("{key}") => key.to_string(),
        Ok(text) if text.chars().all(|c| c.is_ascii_graphic()) => text.to_string(),
        _ => format!("<{} bytes>", arg.len()),
    };
    command.iter().map(shown).collect::<Vec<_>>().join(" ")
}

/// Where the module value's bytes are in a DUMP payload: after the type (module 2), the
/// module id (64 bits) and the string opcode, a length-prefixed string (`rdbcompression no`).
fn value_span(payload: &[u8]) -> std::ops::Range<usize> {
    const RDB_TYPE_MODULE_2: u8 = 7;
    const RDB_64BITLEN: u8 = 0x81;
    const RDB_MODULE_OPCODE_STRING: u8 = 5;
    assert_eq!(
        (payload[0], payload[1], payload[10]),
        (RDB_TYPE_MODULE_2, RDB_64BITLEN, RDB_MODULE_OPCODE_STRING),
        "a module value holding one string: {}",
        hex(payload)
    );
    let (len, start) = match payload[11] >> 6 {
        0 => (usize::from(payload[11] & 0x3f), 12),
        1 => (
            (usize::from(payload[11] & 0x3f) << 8) | usize::from(payload[12]),
            13,
        ),
        2 if payload[11] == 0x80 => {
            let len = u32::from_be_bytes(payload[12..16].try_into().expect("4 bytes"));
            (len as usize, 16)
        }
        _ => panic!("an uncompressed string length: {}", hex(payload)),
    };
    start..start + len
}

/// Sets each holder's expiry in a value of holds (not a plain lock) to `expiry_of(i)` for
/// the i-th holder (0: never). The layout is the one of encoding version 3
/// (src/core/stored/encoding.rs): a 13-byte header (tag `FF FF`, length, kind, limit, holder count),
/// then per holder flags (1), client id (8), expiry (8), token and count (8), owner length (2)
/// and the owner. Returns the new expiries by owner.
fn set_holder_expiries(
    value: &mut [u8],
    expiry_of: impl Fn(i64) -> i64,
) -> Vec<(Vec<u8>, Option<i64>)> {
    assert_eq!(&value[..2], [0xff, 0xff], "holds, not a plain lock");
    let holders = u16::from_le_bytes([value[11], value[12]]);
    let mut at = 13;
    let mut set = Vec::new();
    for i in 0..i64::from(holders) {
        let expiry = expiry_of(i);
        value[at + 9..at + 17].copy_from_slice(&expiry.to_le_bytes());
        let owner_len = usize::from(u16::from_le_bytes([value[at + 25], value[at + 26]]));
        let owner = value[at + 27..at + 27 + owner_len].to_vec();
        set.push((owner, Some(expiry).filter(|&at| at > 0)));
        at += 27 + owner_len;
    }
    assert_eq!(at, value.len(), "the holders fill the value");
    set
}

/// The key as it is now on `con`, with each holder's expiry from `moved` (holds) or the
/// key's own (a plain lock).
fn describe_key(
    con: &mut redis::Connection,
    key: &str,
    mode: &str,
    moved: &[(Vec<u8>, Option<i64>)],
) -> KeyFixture {
    let expires_at = Some(pexpiretime(con, key)).filter(|&at| at >= 0);
    let probe = KeyFixture {
        key: key.to_string(),
        mode: mode.to_string(),
        ..KeyFixture::default()
    };
    let (limit, _, mut seen) = seen_holders(con, &probe);
    // In the order they were granted, so that a re-made file differs only where it must.
    seen.sort_by_key(|holder| holder.token);
    let holders = seen
        .into_iter()
        .map(|seen| HolderFixture {
            expires_at: moved
                .iter()
                .find(|(owner, _)| *owner == seen.owner)
                .map_or(expires_at, |(_, at)| *at),
            owner: seen.owner,
            count: seen.count,
            token: seen.token,
            session: seen.session,
        })
        .collect();
    KeyFixture {
        expires_at,
        limit,
        holders,
        ..probe
    }
}

/// The LOCK.INFO mode of `key`.
fn mode_of(con: &mut redis::Connection, key: &str) -> String {
    let reply = call!(con, "LOCK.INFO", key).expect("LOCK.INFO");
    let Some(items) = (match &reply {
        redis::Value::Array(items) => Some(items.clone()),
        _ => None,
    }) else {
        panic!("LOCK.INFO {key} on RESP2: {reply:?}");
    };
    match items
        .iter()
        .position(|item| text(item).as_deref() == Some("mode"))
    {
        Some(i) => text(&items[i + 1]).expect("mode"),
        None => "exclusive".into(),
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Which build and server wrote the fixtures, for their comments.
fn provenance(con: &mut redis::Connection) -> String {
    let changed = command_output("git", &["status", "--porcelain", "--", "src", "Cargo.toml"]);
    assert!(
        changed.is_empty(),
        "src/ has uncommitted changes: commit them first, so the fixtures name the commit \
         that made them:\n{changed}"
    );
    let commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    let date = command_output("date", &["-u", "+%Y-%m-%d"]);
    let server = info_field(con, "server", "redis_version").expect("redis_version");
    let module = info_field(con, "lock", "lock_version").expect("lock_version");
    format!("rlock {module} built from commit {commit} on redis-server {server} on {date}")
}

/// Writes the files of one fixture unless they are there: then they stay as an older build
/// wrote them (what later builds must load), unless `RLOCK_MAKE_FIXTURES=replace`.
fn write_fixture(files: &[(String, Vec<u8>)]) {
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| fixture_path(name)).collect();
    let replace = std::env::var("RLOCK_MAKE_FIXTURES").is_ok_and(|value| value == "replace");
    let present = paths.iter().filter(|path| path.exists()).count();
    if present == paths.len() && !replace {
        eprintln!("kept {paths:?} (RLOCK_MAKE_FIXTURES=replace replaces them)");
        return;
    }
    assert!(
        present == 0 || replace,
        "only some of {paths:?} exist: restore them from git, or replace them all"
    );
    for (path, (_, contents)) in paths.iter().zip(files) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the fixture dir");
        fs::write(path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }
}

/// A server whose tokens run a day ahead of its clock, as after a promotion: a replica of a
/// master of its own, promoted with the largest split allowance.
fn promoted_server() -> (Server, Server) {
    let master = Server::start();
    let server = Server::start_with(&[
        "--lock.split-allowance-ms",
        "86400000",
        "--rdbcompression",
        "no",
        "--dbfilename",
        "locks.rdb",
    ]);
    server.replicate_from(&master);
    ok(
        call!(&mut server.conn(), "REPLICAOF", "NO", "ONE"),
        "REPLICAOF NO ONE",
    );
    server.wait_for_info("lock", "lock_token_lead_ms", "86400000");
    (server, master)
}

/// Makes the files under tests/fixtures/ that are missing (all of them with
/// `RLOCK_MAKE_FIXTURES=replace`) with the module and the server under test, which must be the
/// oldest server the suite runs (redis 7.0, RDB version 10), so that every server loads what it
/// writes. Run by hand (tests/fixtures/README.md):
/// `RLOCK_MAKE_FIXTURES=1 cargo test --release -p rlock --test fixtures -- --ignored`.
#[test]
#[ignore = "makes tests/fixtures (RLOCK_MAKE_FIXTURES=1): see tests/fixtures/README.md"]
fn make_fixtures() {
    if std::env::var_os("RLOCK_MAKE_FIXTURES").is_none() {
        eprintln!("make_fixtures skipped: set RLOCK_MAKE_FIXTURES=1 to make tests/fixtures");
        return;
    }
    let names: Vec<&str> = shapes().iter().map(|shape| shape.name).collect();
    assert_eq!(names, SHAPES, "a fixture for every shape the tests load");
    let (server, _master) = promoted_server();
    let mut con = server.conn();
    let made_by = provenance(&mut con);
    let mut rdb_keys = Vec::new();
    for shape in shapes() {
        let key = format!("fixture:{}", shape.name);
        for command in &shape.commands {
            run_shape_command(&mut con, &key, command);
        }
        dump_shape(&mut con, &key, &shape, &made_by);
        if shape.in_rdb {
            rdb_keys.push(key);
        } else {
            assert_eq!(int(call!(&mut con, "DEL", &key), "DEL"), 1);
        }
    }
    save_rdb(&mut con, &server, &rdb_keys, &made_by);
}

/// Whether a DUMP payload holds a plain lock (not tagged holds).
fn is_plain(payload: &[u8]) -> bool {
    payload[value_span(payload)][..2] != [0xff, 0xff]
}

/// DUMPs `key` into its fixture file. The holders of holds (not a plain lock) carry their own
/// expiries, which a RESTORE refuses more than 31 days ahead (`check_expiries` in
/// src/core/stored/encoding.rs) while the fixture must load in any later year: their expiries are set
/// to never, and the key is put back as that payload, then expires in 2100 (PEXPIREAT caps
/// every holder) for the RDB fixture.
fn dump_shape(con: &mut redis::Connection, key: &str, shape: &Shape, made_by: &str) {
    let mut payload = dump(con, key);
    assert!(
        rdb_version(&payload) <= 10,
        "RDB version {} is too new for redis 7.0: make the fixtures with it",
        rdb_version(&payload)
    );
    let mode = mode_of(con, key);
    let plain = is_plain(&payload);
    let fixture = if plain {
        describe_key(con, key, &mode, &[])
    } else {
        let span = value_span(&payload);
        let never = set_holder_expiries(&mut payload[span], |_| 0);
        payload = with_checksum(payload);
        let reply = call!(con, "RESTORE", key, 0, &payload, "REPLACE");
        ok(reply, "RESTORE the holds that never expire");
        let fixture = describe_key(con, key, &mode, &never);
        let far = call!(con, "PEXPIREAT", key, FAR_EXPIRY);
        assert_eq!(int(far, "PEXPIREAT"), 1);
        fixture
    };
    let mut header = format!(
        "# {}: {}.\n# Written by {made_by}\n# (rdbcompression no) as DUMP {key} after:\n",
        shape.name, shape.about
    );
    for command in &shape.commands {
        header += &format!("#   {}\n", describe(key, command));
    }
    if !plain {
        header +=
            "# Then each holder's expiry (absolute, in the payload) was set to 0, never, and\n\
                   # the checksum made right: a RESTORE refuses a holder expiring more than 31\n\
                   # days ahead, and this must load, as held, in any later year.\n";
    }
    header += "# The format and how to re-make it: tests/fixtures/README.md.\n";
    let body = FixtureFile {
        keys: vec![KeyFixture {
            payload: Some(payload),
            ..fixture
        }],
        ..FixtureFile::default()
    };
    write_fixture(&[(
        format!("dump/{}.txt", shape.name),
        (header + &body.render()).into_bytes(),
    )]);
}

/// Saves the server's data as the RDB fixture, with the last token a released lock's (so that
/// only the aux data holds it), and its description beside it. The holders of each key of
/// holds (all expiring in 2100) are moved a minute apart, earlier, in the saved file (loading
/// takes what the file says), so that the test tells each holder's expiry from the others'.
fn save_rdb(con: &mut redis::Connection, server: &Server, keys: &[String], made_by: &str) {
    let released = acquire(con, "fixture:released", "owner-released", TTL);
    assert_eq!(release(con, "fixture:released", "owner-released"), 0);
    ok(call!(con, "SAVE"), "SAVE");
    let mut rdb = fs::read(server.dir().join("locks.rdb")).expect("the saved RDB file");
    let mut described = Vec::new();
    for key in keys {
        let payload = dump(con, key);
        let mode = mode_of(con, key);
        let moved = if is_plain(&payload) {
            Vec::new()
        } else {
            let value = &payload[value_span(&payload)];
            let at = rdb
                .windows(value.len())
                .position(|window| window == value)
                .unwrap_or_else(|| panic!("{key}'s value is in the RDB file"));
            let step = |i| FAR_EXPIRY - i * HOLDER_EXPIRY_STEP;
            set_holder_expiries(&mut rdb[at..at + value.len()], step)
        };
        described.push(describe_key(con, key, &mode, &moved));
    }
    let rdb = with_checksum(rdb);
    let file = FixtureFile {
        last_token: Some(info_int(con, "lock", "lock_last_token")),
        token_lead_ms: Some(info_int(con, "lock", "lock_token_lead_ms")),
        keys: described,
    };
    assert_eq!(file.last_token, Some(released));
    let header = format!(
        "# rdb/locks.rdb: every shape of dump/ but the large owner, and the token counter (aux\n\
         # data). Written by {made_by}\n\
         # (rdbcompression no) as SAVE after the commands of those files, then PEXPIREAT\n\
         # {FAR_EXPIRY} (2100-01-01) of the shared, LIMIT and session keys (put back from\n\
         # their payloads), then LOCK.ACQUIRE fixture:released owner-released {TTL} and its\n\
         # LOCK.RELEASE: the last token is that released lock's. In the saved file the holders\n\
         # of those keys were then moved a minute apart (earlier) and its checksum made right.\n\
         # The server was a replica promoted with lock.split-allowance-ms 86400000: its tokens\n\
         # run a day ahead of its clock. The format and how to re-make it: README.md.\n"
    );
    write_fixture(&[
        ("rdb/locks.rdb".into(), rdb),
        (
            "rdb/locks.txt".into(),
            (header + &file.render()).into_bytes(),
        ),
    ]);
}
