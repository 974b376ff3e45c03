//! The commands a client sends about a lock's holds.

pub mod acquire;
pub mod info;
pub mod reenter;
pub mod release;
pub mod renew;
