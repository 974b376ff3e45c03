//! A command sent on its own connection from a thread, so that a test can go on while the
//! server blocks it (LOCK.ACQUIRE ... WAIT, LOCK.OBSERVE) and read its reply later.

use std::sync::mpsc::{channel, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use redis::{ConnectionLike, Value};

/// A call in flight: its reply (a server error as `Err(text)`, a lost connection as
/// `Err("connection: ...")`) arrives once the server answers.
pub struct Background {
    reply: Receiver<Result<Value, String>>,
    thread: JoinHandle<()>,
}

impl Background {
    /// Sends `command` on `con` from a new thread.
    pub fn send(mut con: redis::Connection, command: redis::Cmd) -> Background {
        let (send, reply) = channel();
        let thread = std::thread::spawn(move || {
            let got = match con.req_command(&command) {
                Ok(Value::ServerError(error)) => Err(super::error_text(&error)),
                Ok(value) => Ok(value),
                Err(error) => Err(format!("connection: {error}")),
            };
            let _ = send.send(got);
        });
        Background { reply, thread }
    }

    /// The reply, waiting at most `within` (a panic past it: only a bug waits that long).
    pub fn reply(self, within: Duration) -> Result<Value, String> {
        let got = self
            .reply
            .recv_timeout(within)
            .expect("the call got no reply in time");
        let _ = self.thread.join();
        got
    }

    /// The reply if it has come, without waiting.
    pub fn try_reply(&self) -> Option<Result<Value, String>> {
        self.reply.try_recv().ok()
    }
}
