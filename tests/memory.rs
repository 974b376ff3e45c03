//! MEMORY USAGE of a lock key (issue 9, point 7): it counts what a lock really costs, so that
//! a lock compares with a plain string key as their real costs (`used_memory`) do, and the
//! clients queued for it add to it.
//!
//! Real costs are measured as the growth of the server's memory over many keys, per key. What
//! is compared is the difference between a lock and a string key of the same key name and
//! expiry: the per-key costs both share (the key's entry in the main and expires tables, an
//! embedded key name) cancel out, and what remains is exactly what the two values cost.

mod common;

use common::*;

/// Keys per measurement: enough that the noise of one allocation (a client buffer, a table
/// resize) is well below a byte per key.
const KEYS: usize = 20_000;
/// Keys created per pipeline.
const BATCH: usize = 100;
/// How far MEMORY USAGE's difference between a lock and a string may fall below the real one,
/// in bytes per key: the allocator's size classes round both sides alike, and what is left is
/// the noise of the server's own allocations during a measurement spread over KEYS keys. A lock
/// must never again look cheaper than it is.
const UNDER_TOLERANCE: f64 = 6.0;
/// How far it may rise above: servers add amounts of their own for module keys that rlock
/// cannot see (Valkey 9.1's build with glibc malloc over-reports by about 22 bytes a key).
const OVER_TOLERANCE: f64 = 32.0;
const TTL_MS: u64 = 600_000;
const OWNER_BYTES: usize = 38;

/// `used_memory` less the tables of the keyspace and everything the server keeps besides the
/// data (client buffers, the replication backlog...): MEMORY STATS' `dataset.bytes`. The
/// tables are the same for both kinds of key, but how far an incremental rehash has got when
/// a measurement ends is not, and a half-rehashed table holds both its old and new buckets.
fn dataset_bytes(con: &mut redis::Connection) -> i64 {
    let Ok(redis::Value::Array(items)) = call!(con, "MEMORY", "STATS") else {
        panic!("MEMORY STATS did not answer an array");
    };
    items
        .chunks(2)
        .find_map(|pair| match (text(&pair[0]).as_deref(), &pair[1]) {
            (Some("dataset.bytes"), redis::Value::Int(n)) => Some(*n),
            _ => None,
        })
        .expect("MEMORY STATS has dataset.bytes")
}

/// Per key, over KEYS keys made by `make`: (growth of used_memory, growth of the data set,
/// MEMORY USAGE).
#[derive(Debug)]
struct PerKey {
    used: f64,
    dataset: f64,
    usage: f64,
}

fn key_name(i: usize) -> String {
    format!("key:{i:07}")
}

fn measure(server: &Server, make: impl Fn(&mut redis::Pipeline, &str)) -> PerKey {
    let mut con = server.conn();
    ok(call!(&mut con, "FLUSHALL", "SYNC"), "FLUSHALL");
    let clients = info_field(&mut con, "clients", "connected_clients");
    let (used_before, dataset_before) = (
        info_int(&mut con, "memory", "used_memory"),
        dataset_bytes(&mut con),
    );
    // On a connection of its own, closed before the measurement: its buffers go with it.
    let mut maker = server.conn();
    for start in (0..KEYS).step_by(BATCH) {
        let mut pipe = redis::pipe();
        for i in start..(start + BATCH).min(KEYS) {
            make(&mut pipe, &key_name(i));
        }
        let replies: Vec<redis::Value> = pipe.query(&mut maker).expect("the pipeline");
        for reply in replies {
            assert!(
                !matches!(reply, redis::Value::Nil | redis::Value::ServerError(_)),
                "a key was not made: {reply:?}"
            );
        }
    }
    drop(maker);
    wait_until("the key maker's connection to close", || {
        info_field(&mut con, "clients", "connected_clients") == clients
    });
    let (used_after, dataset_after) = (
        info_int(&mut con, "memory", "used_memory"),
        dataset_bytes(&mut con),
    );
    let mut usage = 0i64;
    for i in 0..KEYS {
        usage += int(
            call!(&mut con, "MEMORY", "USAGE", key_name(i)),
            "MEMORY USAGE",
        );
    }
    let keys = KEYS as f64;
    PerKey {
        used: (used_after - used_before) as f64 / keys,
        dataset: (dataset_after - dataset_before) as f64 / keys,
        usage: usage as f64 / keys,
    }
}

fn owner(i: usize) -> String {
    format!("{i:0width$}", width = OWNER_BYTES)
}

/// A plain exclusive lock (its packed form: a 10-byte header and the owner).
fn plain_lock(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("LOCK.ACQUIRE").arg(key).arg(owner(0)).arg(TTL_MS);
}
const PLAIN_LOCK_BYTES: usize = 10 + OWNER_BYTES;

/// Three shared holders (the tagged form: a 13-byte header, 27 bytes and the owner per holder).
fn shared_lock(pipe: &mut redis::Pipeline, key: &str) {
    for i in 0..3 {
        pipe.cmd("LOCK.ACQUIRE")
            .arg(key)
            .arg(owner(i))
            .arg(TTL_MS)
            .arg("SHARED");
    }
}
const SHARED_LOCK_BYTES: usize = 13 + 3 * (27 + OWNER_BYTES);

fn string_of(len: usize) -> impl Fn(&mut redis::Pipeline, &str) {
    move |pipe, key| {
        pipe.cmd("SET")
            .arg(key)
            .arg("v".repeat(len))
            .arg("PX")
            .arg(TTL_MS);
    }
}

/// Checks a lock kind against strings of a few value sizes (the server keeps short strings
/// differently from long ones: the comparison must hold against each).
fn compare(server: &Server, what: &str, lock: fn(&mut redis::Pipeline, &str), sizes: &[usize]) {
    let lock = measure(server, lock);
    for &len in sizes {
        let string = measure(server, string_of(len));
        let real = lock.dataset - string.dataset;
        let reported = lock.usage - string.usage;
        eprintln!(
            "{what} vs a {len}-byte string, per key: lock used {:.1} dataset {:.1} usage {:.1}; \
             string used {:.1} dataset {:.1} usage {:.1}",
            lock.used, lock.dataset, lock.usage, string.used, string.dataset, string.usage
        );
        assert!(
            reported >= real - UNDER_TOLERANCE && reported <= real + OVER_TOLERANCE,
            "{what}: MEMORY USAGE says a lock costs {reported:.1} bytes more than a string of \
             {len} bytes, it really costs {real:.1} more ({lock:?} vs {string:?})"
        );
    }
}

#[test]
fn memory_usage_of_a_plain_lock_compares_with_a_string_as_its_real_cost_does() {
    let server = Server::start();
    compare(
        &server,
        "a plain lock",
        plain_lock,
        &[OWNER_BYTES, PLAIN_LOCK_BYTES, 100],
    );
}

#[test]
fn memory_usage_of_shared_holds_compares_with_a_string_as_their_real_cost_does() {
    let server = Server::start();
    compare(
        &server,
        "three shared holds",
        shared_lock,
        &[OWNER_BYTES, SHARED_LOCK_BYTES],
    );
}

#[test]
fn the_clients_queued_for_a_lock_count_in_its_memory_usage_until_they_leave() {
    let server = Server::start();
    let mut con = server.conn();
    int(
        call!(&mut con, "LOCK.ACQUIRE", "queued", owner(0), TTL_MS),
        "LOCK.ACQUIRE",
    );
    let alone = int(call!(&mut con, "MEMORY", "USAGE", "queued"), "MEMORY USAGE");
    // Owners far longer than every other per-waiter cost, so that their bytes must be counted.
    const WAITER_OWNER_BYTES: usize = 1000;
    let mut waiters = Vec::new();
    for i in 1..=3 {
        let mut waiter = server.conn();
        waiters.push(std::thread::spawn(move || {
            nil(
                call!(
                    &mut waiter,
                    "LOCK.ACQUIRE",
                    "queued",
                    format!("{i}{}", "w".repeat(WAITER_OWNER_BYTES - 1)),
                    TTL_MS,
                    "WAIT",
                    500
                ),
                "a waiter that times out",
            )
        }));
        server.wait_for_blocked_clients(i);
    }
    let with_waiters = int(call!(&mut con, "MEMORY", "USAGE", "queued"), "MEMORY USAGE");
    // Each queue entry holds at least its owner's bytes.
    assert!(
        with_waiters >= alone + 3 * WAITER_OWNER_BYTES as i64,
        "{alone} B alone, {with_waiters} B with three waiters"
    );
    // And not much more: a waiter's entries take tens of bytes beside its owner, the queue
    // itself (its tables, the key's name, a B-tree node) a few kilobytes at most.
    assert!(
        with_waiters <= alone + 3 * (WAITER_OWNER_BYTES as i64 + 256) + 4096,
        "{alone} B alone, {with_waiters} B with three waiters"
    );
    for waiter in waiters {
        waiter.join().expect("waiter thread");
    }
    server.wait_for_blocked_clients(0);
    let after = int(call!(&mut con, "MEMORY", "USAGE", "queued"), "MEMORY USAGE");
    assert_eq!(after, alone, "the waiters left");
}

/// A released plain lock's allocation is kept for the next lock of its size
/// (glue/server/recycled.rs), counted in `lock_recycled_bytes`, and handed over rewritten
/// whole: the next lock reads its own owner, count, token and ttl, never the last one's.
/// A lazy free on the server's background thread (FLUSHALL ASYNC) leaves it consistent.
#[test]
fn a_released_locks_allocation_serves_the_next_lock_of_its_size_rewritten_whole() {
    let server = Server::start();
    let mut con = server.conn();
    let recycled = |con: &mut redis::Connection| info_int(con, "lock", "lock_recycled_bytes");
    assert_eq!(recycled(&mut con), 0);
    let first_token = acquire(&mut con, "first", "owner-aaaaaaaaaa", 600_000);
    assert_eq!(release(&mut con, "first", "owner-aaaaaaaaaa"), 0);
    // 10 header bytes and the 16-byte owner.
    assert_eq!(recycled(&mut con), 26);
    // Another owner of the same length takes it.
    let second_token = acquire(&mut con, "second", "holder-bbbbbbbbb", 5_000);
    assert_eq!(recycled(&mut con), 0);
    let info = lock_info(&mut con, "second").expect("held");
    assert_eq!(info.owner, b"holder-bbbbbbbbb");
    assert_eq!((info.count, info.token), (1, second_token));
    assert!(second_token > first_token);
    assert!(info.ttl > 0 && info.ttl <= 5_000, "ttl {}", info.ttl);
    assert_eq!(
        acquire(&mut con, "second", "holder-bbbbbbbbb", 5_000),
        second_token
    );
    assert_eq!(lock_info(&mut con, "second").expect("held").count, 2);
    // An owner of another length does not take it; the kept allocations stay one size.
    assert_eq!(release(&mut con, "second", "holder-bbbbbbbbb"), 1);
    assert_eq!(release(&mut con, "second", "holder-bbbbbbbbb"), 0);
    assert_eq!(recycled(&mut con), 26);
    acquire(&mut con, "third", "short", 600_000);
    assert_eq!(recycled(&mut con), 26);
    assert_eq!(lock_info(&mut con, "third").expect("held").owner, b"short");
    // Many locks freed at once by the background thread, then used again.
    for i in 0..500 {
        acquire(&mut con, &format!("many:{i}"), "owner-cccccccccc", 600_000);
    }
    ok(call!(&mut con, "FLUSHALL", "ASYNC"), "FLUSHALL ASYNC");
    wait_until("the lazy free to finish", || {
        info_int(&mut con, "lock", "lock_held") == 0
    });
    assert!(
        recycled(&mut con) <= 1024 * 26,
        "kept {}",
        recycled(&mut con)
    );
    for i in 0..300 {
        let key = format!("again:{i}");
        let token = acquire(&mut con, &key, "owner-dddddddddd", 600_000);
        let info = lock_info(&mut con, &key).expect("held");
        assert_eq!(
            (info.owner.as_slice(), info.token),
            (&b"owner-dddddddddd"[..], token)
        );
    }
}
