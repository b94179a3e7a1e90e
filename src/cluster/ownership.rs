//! Shard ownership: whether this node may serve a shard now. Fencing of writes is
//! not here but in the database (`shard_epochs`); ownership only decides who
//! tries.

/// Which shards this node owns. The cluster implementation (Redis leases) adds
/// acquisition, renewal and hand-off behind the same questions.
pub trait Ownership: Send + Sync + 'static {
    /// The node's id, recorded as the owner of the shards it fences.
    fn node_id(&self) -> &str;

    fn owns(&self, shard: u32) -> bool;

    /// The shards this node owns now, ascending.
    fn owned_shards(&self) -> Vec<u32>;
}

/// One node, owning every shard: the embedded default.
pub struct LocalOwnership {
    node_id: String,
    shard_count: u32,
}

impl LocalOwnership {
    pub fn new(node_id: impl Into<String>, shard_count: u32) -> Self {
        LocalOwnership {
            node_id: node_id.into(),
            shard_count,
        }
    }
}

impl Ownership for LocalOwnership {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn owns(&self, shard: u32) -> bool {
        shard < self.shard_count
    }

    fn owned_shards(&self) -> Vec<u32> {
        (0..self.shard_count).collect()
    }
}
