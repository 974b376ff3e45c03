//! A lock's state and its transitions: the holders of a key (holds), the packed single-holder
//! form and its commands (lock, plain), fencing tokens (tokens), and the epoch observers watch.

pub mod epoch;
pub mod holds;
pub mod lock;
pub mod plain;
pub mod tokens;
