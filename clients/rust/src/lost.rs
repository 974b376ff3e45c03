//! Why a hold was lost: `LOCK.LOST key owner`, asked once on the failure path of a release,
//! renewal or reentry that found the hold gone, and carried in [`Error::NotHeld`].

use std::time::Duration;

use redis::Value;

use crate::error::Error;

/// What ended a hold, as the server's `LOCK.LOST` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostBy {
    /// `expired`: the hold's ttl or lease ran out while held (a holder paused, crashed, or
    /// renewing too late).
    Expired,
    /// `deleted`: an admin's `DEL` / `UNLINK` of the key (the force release).
    Deleted,
    /// `overwritten`: another value was written over the key (`SET`, `RESTORE ... REPLACE`,
    /// `RENAME` onto it).
    Overwritten,
    /// `flushed`: `FLUSHDB` / `FLUSHALL`.
    Flushed,
    /// `dropped-on-resync`: the node became a replica and its first full sync dropped the hold
    /// (a split brain).
    DroppedOnResync,
    /// `session-closed`: a session hold's connection closed.
    SessionClosed,
    /// A name this client does not know (a newer module), as the server sent it.
    Other(String),
}

impl LostBy {
    fn parse(name: &str) -> LostBy {
        match name {
            "expired" => LostBy::Expired,
            "deleted" => LostBy::Deleted,
            "overwritten" => LostBy::Overwritten,
            "flushed" => LostBy::Flushed,
            "dropped-on-resync" => LostBy::DroppedOnResync,
            "session-closed" => LostBy::SessionClosed,
            other => LostBy::Other(other.to_string()),
        }
    }

    /// The server's name for it (`"expired"`, `"session-closed"`, ...).
    pub fn name(&self) -> &str {
        match self {
            LostBy::Expired => "expired",
            LostBy::Deleted => "deleted",
            LostBy::Overwritten => "overwritten",
            LostBy::Flushed => "flushed",
            LostBy::DroppedOnResync => "dropped-on-resync",
            LostBy::SessionClosed => "session-closed",
            LostBy::Other(name) => name,
        }
    }
}

impl std::fmt::Display for LostBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One holder of the key when `LOCK.LOST` was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHolder {
    /// Its owner id.
    pub owner: Vec<u8>,
    /// Its fencing token.
    pub token: u64,
}

/// Why this owner's hold was lost, from the server's record (`LOCK.LOST key owner`; kept for
/// the server's `lock.lost-retention-ms`, a bounded number of records).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LossReason {
    /// What ended it.
    pub by: LostBy,
    /// When, in unix ms by the server's clock (for [`LostBy::Expired`]: the hold's expiry).
    pub at_unix_ms: i64,
    /// How long before the `LOCK.LOST` reply it was lost (the server's `ago_ms`): for an
    /// expiry, how late the release, renewal or reentry that found it gone came.
    pub ago: Duration,
    /// The fencing token of the lost hold (the client checks it is the guard's own).
    pub token: u64,
    /// Its kind: `"exclusive"`, `"shared"` or `"limit"`.
    pub kind: String,
    /// How long it had been held when lost.
    pub held: Duration,
    /// Who holds the key now (empty: free): another owner here means the key was taken over.
    pub holders: Vec<KeyHolder>,
}

impl LossReason {
    /// Whether another owner than `own` holds the key now (it was taken over).
    pub fn taken_over(&self, own: &[u8]) -> bool {
        self.holders.iter().any(|holder| holder.owner != own)
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ms ago after {} ms held",
            self.by,
            self.ago.as_millis(),
            self.held.as_millis()
        )?;
        if !self.holders.is_empty() {
            write!(f, ", now held by {} owner(s)", self.holders.len())?;
        }
        Ok(())
    }
}

/// `LOCK.LOST key owner`.
pub(crate) fn lost_cmd(key: &[u8], owner: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("LOCK.LOST");
    cmd.arg(key).arg(owner);
    cmd
}

/// Fills in the reason of an [`Error::NotHeld`] without one from `reply` (that of
/// [`lost_cmd`]); any other error is returned as it is. A failed or unreadable `LOCK.LOST`,
/// nil, or the record of another hold (its token not `token`, when known) leaves the
/// reason `None`: the error stays `NotHeld` whatever the answer.
pub(crate) fn explain(error: Error, reply: redis::RedisResult<Value>, token: Option<u64>) -> Error {
    match error {
        Error::NotHeld { reason: None } => Error::NotHeld {
            reason: reply
                .ok()
                .and_then(|value| parse_loss(&value))
                .filter(|loss| token.is_none_or(|token| loss.token == token))
                .map(Box::new),
        },
        other => other,
    }
}

/// Whether `result` is an [`Error::NotHeld`] still without a reason (worth one `LOCK.LOST`).
pub(crate) fn needs_reason<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(Error::NotHeld { reason: None }))
}

/// The blocking path: `result` with the reason asked over `conn` when it is a bare
/// [`Error::NotHeld`].
pub(crate) fn with_reason<T, C: redis::ConnectionLike>(
    result: Result<T, Error>,
    conn: &mut C,
    key: &[u8],
    owner: &[u8],
    token: Option<u64>,
) -> Result<T, Error> {
    if !needs_reason(&result) {
        return result;
    }
    let reply = lost_cmd(key, owner).query(conn);
    result.map_err(|error| explain(error, reply, token))
}

/// The async path of [`with_reason`].
#[cfg(feature = "tokio")]
pub(crate) async fn with_reason_async<T, C: redis::aio::ConnectionLike>(
    result: Result<T, Error>,
    conn: &mut C,
    key: &[u8],
    owner: &[u8],
    token: Option<u64>,
) -> Result<T, Error> {
    if !needs_reason(&result) {
        return result;
    }
    let reply = lost_cmd(key, owner).query_async(conn).await;
    result.map_err(|error| explain(error, reply, token))
}

/// The fields of a map reply: RESP3 map, or RESP2 flat array of name/value pairs.
pub(crate) fn fields(value: &Value) -> Option<Vec<(String, &Value)>> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(name, value)| Some((text(name)?, value)))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|pair| Some((text(&pair[0])?, &pair[1])))
            .collect(),
        _ => None,
    }
}

pub(crate) fn field<'a>(fields: &[(String, &'a Value)], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| *value)
}

pub(crate) fn text(value: &Value) -> Option<String> {
    bytes(value).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// `LOCK.LOST`'s reply: `None` for nil or anything not shaped as documented.
pub(crate) fn parse_loss(value: &Value) -> Option<LossReason> {
    let fields = fields(value)?;
    let get = |name: &str| field(&fields, name);
    let non_negative = |name: &str| get(name).and_then(int).and_then(|n| u64::try_from(n).ok());
    let holders = match get("holders")? {
        Value::Array(list) | Value::Set(list) => list
            .iter()
            .map(|holder| {
                let holder = self::fields(holder)?;
                Some(KeyHolder {
                    owner: bytes(field(&holder, "owner")?)?,
                    token: u64::try_from(int(field(&holder, "token")?)?).ok()?,
                })
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(LossReason {
        by: LostBy::parse(&text(get("reason")?)?),
        at_unix_ms: int(get("time")?)?,
        ago: Duration::from_millis(non_negative("ago_ms")?),
        token: non_negative("token")?,
        kind: text(get("kind")?)?,
        held: Duration::from_millis(non_negative("held_ms")?),
        holders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(s: &str) -> Value {
        Value::SimpleString(s.to_string())
    }

    fn resp2(holders: Vec<Value>) -> Value {
        Value::Array(vec![
            simple("reason"),
            Value::BulkString(b"expired".to_vec()),
            simple("time"),
            Value::Int(1_700_000_000_000),
            simple("ago_ms"),
            Value::Int(250),
            simple("token"),
            Value::Int(42),
            simple("kind"),
            Value::BulkString(b"exclusive".to_vec()),
            simple("held_ms"),
            Value::Int(1000),
            simple("holders"),
            Value::Array(holders),
        ])
    }

    #[test]
    fn resp2_and_resp3_replies_parse_alike() {
        let holder = Value::Array(vec![
            simple("owner"),
            Value::BulkString(b"b".to_vec()),
            simple("token"),
            Value::Int(43),
        ]);
        let flat = parse_loss(&resp2(vec![holder])).expect("resp2");
        assert_eq!(flat.by, LostBy::Expired);
        assert_eq!(flat.ago, Duration::from_millis(250));
        assert_eq!(flat.token, 42);
        assert_eq!(flat.held, Duration::from_secs(1));
        assert_eq!(flat.kind, "exclusive");
        assert_eq!(
            flat.holders,
            [KeyHolder {
                owner: b"b".to_vec(),
                token: 43
            }]
        );
        assert!(flat.taken_over(b"a"));
        assert!(!flat.taken_over(b"b"));
        let Value::Array(items) = resp2(vec![Value::Map(vec![
            (simple("owner"), Value::BulkString(b"b".to_vec())),
            (simple("token"), Value::Int(43)),
        ])]) else {
            unreachable!()
        };
        let map = Value::Map(
            items
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect(),
        );
        assert_eq!(parse_loss(&map), Some(flat));
        assert_eq!(parse_loss(&Value::Nil), None);
        assert_eq!(parse_loss(&Value::Array(vec![simple("reason")])), None);
    }

    #[test]
    fn a_failed_or_foreign_answer_leaves_not_held_without_a_reason() {
        let bare = || Error::NotHeld { reason: None };
        let reply = || Ok(resp2(vec![]));
        let failed = Err(redis::RedisError::from((redis::ErrorKind::Io, "gone")));
        assert!(matches!(
            explain(bare(), failed, Some(42)),
            Error::NotHeld { reason: None }
        ));
        assert!(matches!(
            explain(bare(), Ok(Value::Nil), Some(42)),
            Error::NotHeld { reason: None }
        ));
        assert!(matches!(
            explain(bare(), reply(), Some(41)),
            Error::NotHeld { reason: None }
        ));
        assert!(matches!(
            explain(bare(), reply(), Some(42)),
            Error::NotHeld { reason: Some(loss) } if loss.by == LostBy::Expired
        ));
        assert!(matches!(
            explain(Error::NotAcquired, reply(), None),
            Error::NotAcquired
        ));
    }
}
