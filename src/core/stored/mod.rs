//! What a lock is kept as: its bytes in RDB files and DUMP payloads (encoding), the bounds a
//! request and a loaded value must keep (limits), and MEMORY USAGE's model (memory).

pub mod encoding;
pub mod limits;
pub mod memory;
