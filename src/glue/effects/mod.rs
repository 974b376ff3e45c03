//! What a change does beyond the keyspace's bytes, and the stored key itself: open/put/delete of
//! a lock key (keys), keyspace notifications (signals), counters (stats), the fencing-token
//! counter (token_counter), and the effects sent to replicas and the AOF (replicate,
//! propagation). Depends only on `server` and `core`.

pub mod keys;
pub mod lock_scan;
pub mod monitor;
pub mod moved_values;
pub mod observed;
pub mod propagation;
pub mod replicate;
pub mod signals;
pub mod stats;
pub mod token_counter;
