//! What the server calls besides commands: the data type's methods (datatype), server events
//! such as flush, swapdb, fork, role and config changes (events), `INFO lock` (info), the
//! cluster-wide token floor (cluster_floor) and the sweep of keys whose holds all ended (sweep). Sits beside the commands, above `waiting`.

pub mod cluster_floor;
pub mod datatype;
pub mod events;
pub mod info;
pub mod sweep;
