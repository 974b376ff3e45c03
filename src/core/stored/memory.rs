//! MEMORY USAGE's model of what rlock keeps beside a value for the clients waiting for it:
//! pure arithmetic over the sizes the glue reads off its own types (`size_of`) and off the
//! server's allocator, so that each term is pinned by a unit test.

/// The sizes of the registry's entries for one queue and its waiters, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    /// An entry of the table of queues (queue id and queue).
    pub queue_entry: usize,
    /// An entry of the table from key to queue id (boxed name and id).
    pub key_entry: usize,
    /// An entry of each of the two tables from a waiter to its queue and from a client to its
    /// waiter (two u64).
    pub waiter_link: usize,
    /// A waiter's key and value in the queue's B-tree (seq and waiter).
    pub tree_entry: usize,
}

/// What a queue takes: its two table entries and two copies of the key's name (`name_alloc`,
/// as the allocator sized it), and per waiter its two table entries, its owner (`owner_allocs`
/// for all of them) and its share of the B-tree.
pub fn queue_bytes(
    layout: &QueueLayout,
    name_alloc: usize,
    owner_allocs: usize,
    waiting: usize,
) -> usize {
    let per_queue =
        table_entry(layout.queue_entry) + table_entry(layout.key_entry) + 2 * name_alloc;
    let per_waiter = 2 * table_entry(layout.waiter_link);
    per_queue + owner_allocs + waiting * per_waiter + btree_nodes(waiting, layout.tree_entry)
}

/// The share of a hash table entry: the entry, its control byte, at most 7/8 of buckets full.
pub fn table_entry(size: usize) -> usize {
    (size + 1) * 8 / 7
}

/// Entries a B-tree node holds (std's BTreeMap).
const BTREE_CAPACITY: usize = 11;

/// The B-tree nodes holding `n` entries of `entry` bytes: leaves of up to 11 entries (each
/// leaf a parent pointer, two u16 and 11 entries), and an internal node (a leaf plus 12 edges)
/// per 11 leaves.
pub fn btree_nodes(n: usize, entry: usize) -> usize {
    let leaf = 16 + BTREE_CAPACITY * entry;
    let leaves = n.div_ceil(BTREE_CAPACITY);
    let internal = if leaves > 1 {
        leaves.div_ceil(BTREE_CAPACITY)
    } else {
        0
    };
    let edges = (BTREE_CAPACITY + 1) * std::mem::size_of::<usize>();
    leaves * leaf + internal * (leaf + edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: QueueLayout = QueueLayout {
        queue_entry: 96,
        key_entry: 24,
        waiter_link: 16,
        tree_entry: 80,
    };

    #[test]
    fn a_table_entry_carries_its_control_byte_and_the_tables_slack() {
        assert_eq!(table_entry(16), 19);
        assert_eq!(table_entry(6), 8);
        assert_eq!(table_entry(0), 1);
    }

    #[test]
    fn btree_nodes_grow_a_leaf_per_eleven_entries_and_an_internal_node_per_eleven_leaves() {
        let leaf = 16 + 11 * 80;
        let internal = leaf + 12 * 8;
        assert_eq!(btree_nodes(0, 80), 0);
        assert_eq!(btree_nodes(1, 80), leaf);
        assert_eq!(btree_nodes(11, 80), leaf);
        assert_eq!(btree_nodes(12, 80), 2 * leaf + internal);
        assert_eq!(btree_nodes(121, 80), 11 * leaf + internal);
        assert_eq!(btree_nodes(122, 80), 12 * leaf + 2 * internal);
    }

    #[test]
    fn a_queue_counts_its_entries_names_owners_and_tree() {
        // 110 + 28 + 2 * 16 per queue; 2 * 19 per waiter; 896 for the one leaf.
        assert_eq!(queue_bytes(&LAYOUT, 16, 0, 0), 110 + 28 + 32);
        assert_eq!(queue_bytes(&LAYOUT, 16, 3000, 3), 170 + 3000 + 3 * 38 + 896);
        assert_eq!(
            queue_bytes(&LAYOUT, 24, 40, 1),
            110 + 28 + 48 + 40 + 38 + 896
        );
    }
}
