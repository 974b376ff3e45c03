//! What an operator sees of the locks: the lock log, why a holder lost its hold, wait and hold
//! percentiles, the hottest keys. Bounded in memory, fed by the glue; no lock decision here.

pub mod hot_keys;
pub mod latency;
pub mod lock_log;
pub mod lost_holds;
