//! A corrupt lock in a DUMP payload (the RDB encoding of one value, as RESTORE and MIGRATE read
//! it) is refused with an error; the server stays up and stores nothing. The payloads carry a
//! valid checksum, so it is rlock's own loading code that must notice, not Redis' CRC check.

mod common;

use common::{dump, error, int, lock_info, with_checksum, Server};
use redis::Value;

/// Where the packed lock (10-byte header, then the owner) starts in a payload.
fn lock_offset(payload: &[u8], owner: &[u8]) -> usize {
    let owner_at = payload
        .windows(owner.len())
        .position(|window| window == owner)
        .expect("the owner is in the payload");
    owner_at - 10
}

#[test]
fn the_checksum_helper_matches_redis() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "owner-1", 60000).expect("acquire");
    let payload = dump(&mut con, "k");
    assert_eq!(with_checksum(payload.clone()), payload);
    let token = lock_info(&mut con, "k").expect("held").token;
    assert_eq!(
        call!(&mut con, "RESTORE", "copy", 0, payload).expect("a good payload restores"),
        Value::Okay
    );
    let copy = lock_info(&mut con, "copy").expect("restored");
    assert_eq!(
        (copy.owner.as_slice(), copy.count, copy.token),
        (&b"owner-1"[..], 1, token)
    );
}

/// Changes a payload in place, given where the packed lock starts.
type Corruption = fn(&mut Vec<u8>, usize);

#[test]
fn corrupt_lock_payloads_are_refused_and_the_server_stays_up() {
    let server = Server::start();
    let mut con = server.conn();
    call!(&mut con, "LOCK.ACQUIRE", "k", "owner-1", 60000).expect("acquire");
    let good = dump(&mut con, "k");
    let at = lock_offset(&good, b"owner-1");
    let corruptions: [(&str, Corruption); 4] = [
        ("owner length longer than the bytes", |p, at| p[at] = 200),
        ("owner length shorter than the bytes", |p, at| p[at] = 3),
        ("hold count 0", |p, at| {
            p[at + 2..at + 10].copy_from_slice(&1u64.to_le_bytes())
        }),
        ("token 0", |p, at| {
            p[at + 2..at + 10].copy_from_slice(&(1u64 << 53).to_le_bytes())
        }),
    ];
    for (what, corrupt) in corruptions {
        let mut payload = good.clone();
        corrupt(&mut payload, at);
        let payload = with_checksum(payload);
        let refused = error(call!(&mut con, "RESTORE", "bad", 0, payload), what);
        assert!(refused.starts_with("ERR"), "{what}: {refused}");
        assert_eq!(
            int(call!(&mut con, "EXISTS", "bad"), "nothing stored"),
            0,
            "{what}"
        );
    }
    assert_eq!(lock_info(&mut con, "k").expect("untouched").count, 1);
    call!(&mut con, "PING").expect("the server is still up");
}

#[test]
fn a_truncated_lock_payload_is_refused() {
    // An owner long enough that what is left of the lock after a cut, with the 10 trailer
    // bytes read as its rest, is still short of its length: the load must fail whatever
    // those bytes are (the checksum changes with the token, which follows the clock). Kept
    // uncompressed, so that the owner can be found in the payload.
    let server = Server::start_with(&["--rdbcompression", "no"]);
    let mut con = server.conn();
    let owner = "owner-1-".repeat(5);
    call!(&mut con, "LOCK.ACQUIRE", "k", owner.as_str(), 60000).expect("acquire");
    let good = dump(&mut con, "k");
    // Cut the payload inside the lock's bytes, keep the version and checksum trailer.
    let at = lock_offset(&good, owner.as_bytes());
    let trailer = &good[good.len() - 10..];
    for cut in [at + 4, at + 12] {
        let mut payload = good[..cut].to_vec();
        payload.extend_from_slice(trailer);
        let payload = with_checksum(payload);
        let refused = error(call!(&mut con, "RESTORE", "bad", 0, payload), "truncated");
        assert!(refused.starts_with("ERR"), "{refused}");
        assert_eq!(
            int(call!(&mut con, "EXISTS", "bad"), "nothing stored"),
            0,
            "cut at {cut}"
        );
    }
    assert_eq!(lock_info(&mut con, "k").expect("untouched").count, 1);
    call!(&mut con, "PING").expect("the server is still up");
}
