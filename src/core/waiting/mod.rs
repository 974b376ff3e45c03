//! Waiting for a lock: the FIFO of one key (queue), the plan of a handoff when a key frees up
//! (handoff), and deadlocks refused when a wait would close a cycle (deadlock).

pub mod deadlock;
pub mod handoff;
pub mod queue;
