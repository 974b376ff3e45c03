//! A key named by its database and name, as rlock keeps it between commands (waiters' queues,
//! session indexes, pending take-backs).

/// A key (database and name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef {
    pub db: i32,
    pub name: Box<[u8]>,
}
