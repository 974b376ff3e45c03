//! What a lock key looks like from outside: `LOCK.INFO` parsed (one exclusive holder, or the
//! holders of a shared or LIMIT key), and the whole observable state of a key.

use std::collections::HashMap;

use redis::Value;

use super::replies::{int, text};

/// Tokens stay below 2^53 (exact in JavaScript).
pub const TOKEN_LIMIT: i64 = 1 << 53;

/// What TYPE says of a lock's key (src/glue/datatype.rs).
pub const LOCK_TYPE_NAME: &str = "rlocklock";

/// `LOCK.INFO` parsed: RESP2 flat array or RESP3 map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: Vec<u8>,
    pub count: i64,
    pub ttl: i64,
    pub token: i64,
    pub waiters: i64,
    /// The hold ends with its connection (the `session` field, shown only when it is 1).
    pub session: bool,
    /// The field names in reply order.
    pub fields: Vec<String>,
}

impl LockInfo {
    /// The fields that do not change as time passes.
    pub fn stable(&self) -> (Vec<u8>, i64, i64, i64) {
        (self.owner.clone(), self.count, self.token, self.waiters)
    }

    pub fn parse(value: &Value) -> Option<LockInfo> {
        let pairs: Vec<(Value, Value)> = match value {
            Value::Nil => return None,
            Value::Map(pairs) => pairs.clone(),
            Value::Array(items) => {
                assert!(
                    items.len() % 2 == 0,
                    "LOCK.INFO flat array has an odd length: {value:?}"
                );
                items
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect()
            }
            other => panic!("LOCK.INFO answered neither nil, an array nor a map: {other:?}"),
        };
        let mut fields = Vec::new();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            let name = text(&key).unwrap_or_else(|| panic!("LOCK.INFO field name {key:?}"));
            fields.push(name.clone());
            map.insert(name, value);
        }
        let integer = |name: &str| match map.get(name) {
            Some(Value::Int(n)) => *n,
            other => panic!("LOCK.INFO field {name}: expected an integer, got {other:?}"),
        };
        let owner = match map.get("owner") {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            other => panic!("LOCK.INFO field owner: expected a bulk string, got {other:?}"),
        };
        Some(LockInfo {
            owner,
            count: integer("count"),
            ttl: integer("ttl"),
            token: integer("token"),
            waiters: integer("waiters"),
            session: map.get("session") == Some(&Value::Int(1)),
            fields,
        })
    }
}

/// `LOCK.INFO key`, parsed (`None` when free).
#[track_caller]
pub fn lock_info(con: &mut redis::Connection, key: &str) -> Option<LockInfo> {
    match call!(con, "LOCK.INFO", key) {
        Ok(value) => LockInfo::parse(&value),
        Err(e) => panic!("LOCK.INFO {key}: {e}"),
    }
}

/// `LOCK.INFO` of a key with several holders: (mode, limit, holders by owner, waiters).
#[derive(Debug)]
pub struct Holds {
    pub mode: String,
    pub limit: Option<i64>,
    /// owner -> (count, ttl, token, session)
    pub holders: HashMap<String, (i64, i64, i64, i64)>,
    pub waiters: i64,
}

fn pairs(value: &Value) -> Vec<(String, Value)> {
    let list: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        other => panic!("not a map: {other:?}"),
    };
    list.into_iter()
        .map(|(k, v)| (text(&k).expect("field name"), v))
        .collect()
}

#[track_caller]
pub fn holds(con: &mut redis::Connection, key: &str) -> Holds {
    let reply = call!(con, "LOCK.INFO", key).expect("LOCK.INFO");
    let fields: HashMap<String, Value> = pairs(&reply).into_iter().collect();
    let int_of = |v: &Value| match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer: {other:?}"),
    };
    let mut holders = HashMap::new();
    let Some(Value::Array(list)) = fields.get("holders") else {
        panic!("no holders in {reply:?}");
    };
    for holder in list {
        let h: HashMap<String, Value> = pairs(holder).into_iter().collect();
        holders.insert(
            text(&h["owner"]).expect("owner"),
            (
                int_of(&h["count"]),
                int_of(&h["ttl"]),
                int_of(&h["token"]),
                int_of(&h["session"]),
            ),
        );
    }
    Holds {
        mode: text(&fields["mode"]).expect("mode"),
        limit: fields.get("limit").map(int_of),
        holders,
        waiters: int_of(&fields["waiters"]),
    }
}

/// Everything observable about a key that does not change by itself as time passes: whether
/// it exists, its type, its absolute expiry, and its lock fields or string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    pub exists: i64,
    pub key_type: String,
    pub pexpiretime: i64,
    pub lock: Option<(Vec<u8>, i64, i64, i64)>,
    pub string: Option<Vec<u8>>,
}

#[track_caller]
pub fn key_state(con: &mut redis::Connection, key: &str) -> KeyState {
    let exists = int(call!(con, "EXISTS", key), "EXISTS");
    let key_type = match call!(con, "TYPE", key) {
        Ok(value) => text(&value).expect("TYPE text"),
        Err(e) => panic!("TYPE {key}: {e}"),
    };
    let pexpiretime = int(call!(con, "PEXPIRETIME", key), "PEXPIRETIME");
    let string = if key_type == "string" {
        match call!(con, "GET", key) {
            Ok(Value::BulkString(bytes)) => Some(bytes),
            other => panic!("GET {key}: {other:?}"),
        }
    } else {
        None
    };
    let lock = match key_type.as_str() {
        "none" => {
            assert_eq!(lock_info(con, key), None, "LOCK.INFO on a missing key");
            None
        }
        LOCK_TYPE_NAME => lock_info(con, key).map(|info| info.stable()),
        _ => None,
    };
    KeyState {
        exists,
        key_type,
        pexpiretime,
        lock,
        string,
    }
}
