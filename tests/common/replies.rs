//! Sending a command and reading its reply: server errors as `Err("CODE detail")`, an I/O error
//! (the server died, a reply took longer than the read timeout) as a panic, and the reply
//! kinds a test expects (`int`, `nil`, `error`, `ok`, `text`).

use redis::{ConnectionLike, Value};

/// Sends `cmd` and returns its reply; a server error becomes `Err("CODE detail")`. Errors
/// nested in arrays (EXEC) stay `Value::ServerError`. An I/O error (the server died, or a
/// reply took longer than the read timeout) panics.
pub fn run(con: &mut redis::Connection, cmd: &redis::Cmd) -> Result<Value, String> {
    match con.req_command(cmd) {
        Ok(Value::ServerError(error)) => Err(error_text(&error)),
        Ok(value) => Ok(value),
        Err(error) => match error.code() {
            Some(code) => Err(format!("{code} {}", error.detail().unwrap_or(""))),
            None => panic!("{:?} failed without a server reply: {error}", args_of(cmd)),
        },
    }
}

pub fn error_text(error: &redis::ServerError) -> String {
    match error.details() {
        Some(detail) => format!("{} {detail}", error.code()),
        None => error.code().to_string(),
    }
}

fn args_of(cmd: &redis::Cmd) -> Vec<String> {
    cmd.args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            _ => "<arg>".into(),
        })
        .collect()
}

/// `call!(con, "LOCK.ACQUIRE", "k", "me", 1000)`: sends the command, `Result<Value, String>`.
#[macro_export]
macro_rules! call {
    ($con:expr, $name:expr $(, $arg:expr)* $(,)?) => {{
        #[allow(unused_mut)]
        let mut command = redis::cmd($name);
        $( command.arg($arg); )*
        $crate::common::run($con, &command)
    }};
}

/// The integer of a reply, or a panic naming `what`.
#[track_caller]
pub fn int(reply: Result<Value, String>, what: &str) -> i64 {
    match reply {
        Ok(Value::Int(n)) => n,
        other => panic!("{what}: expected an integer, got {other:?}"),
    }
}

#[track_caller]
pub fn nil(reply: Result<Value, String>, what: &str) {
    match reply {
        Ok(Value::Nil) => {}
        other => panic!("{what}: expected nil, got {other:?}"),
    }
}

/// The error text of a reply, or a panic naming `what`.
#[track_caller]
pub fn error(reply: Result<Value, String>, what: &str) -> String {
    match reply {
        Err(text) => text,
        Ok(other) => panic!("{what}: expected an error, got {other:?}"),
    }
}

#[track_caller]
pub fn ok(reply: Result<Value, String>, what: &str) {
    match reply {
        Ok(Value::Okay) => {}
        Ok(Value::SimpleString(s)) if s == "OK" => {}
        other => panic!("{what}: expected OK, got {other:?}"),
    }
}

/// Text of a simple or bulk string value.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}
