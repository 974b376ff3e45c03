//! The internal commands only a master's replication stream and the AOF send.

pub mod apply;
pub mod tokens;
