//! Decides which shard each point of a write belongs to.
//!
//! A write is split into one body per shard; every replica of a shard receives that shard's body.
//! Today there is one shard holding every node (full replication), so a body goes whole and
//! uncopied to every node. Measurement and tag sharding fill in [`Router::route`] without changing
//! its callers.

use bytes::Bytes;

/// Index of a node in the configuration's `nodes` list.
pub type NodeId = usize;

/// A set of nodes that each hold a full copy of some of the data.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Name shown in `/health` and in errors.
    pub name: String,
    /// The nodes holding a copy, in configuration order.
    pub replicas: Vec<NodeId>,
}

/// The part of one write that belongs to one shard.
#[derive(Debug, Clone)]
pub struct ShardBatch<'r> {
    /// Where it goes.
    pub shard: &'r Shard,
    /// Its line protocol; a slice of the request's body wherever possible.
    pub body: Bytes,
}

/// A write split across shards.
#[derive(Debug, Clone)]
pub struct Routed<'r> {
    /// One entry per shard that receives points.
    pub batches: Vec<ShardBatch<'r>>,
}

/// Maps points to shards.
#[derive(Debug, Clone)]
pub struct Router {
    shards: Vec<Shard>,
}

impl Router {
    /// One shard, named `all`, holding every one of `node_count` nodes.
    pub fn replicate_to_all(node_count: usize) -> Self {
        Router {
            shards: vec![Shard {
                name: "all".to_owned(),
                replicas: (0..node_count).collect(),
            }],
        }
    }

    /// The shards, in configuration order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Splits a write for database `_db` into per-shard bodies.
    pub fn route(&self, _db: &str, body: &Bytes) -> Routed<'_> {
        // With one shard every point goes everywhere: share the body rather than scanning it.
        Routed {
            batches: self
                .shards
                .iter()
                .map(|shard| ShardBatch {
                    shard,
                    body: body.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_replication_shares_the_body() {
        let router = Router::replicate_to_all(3);
        let body = Bytes::from_static(b"cpu v=1\nmem v=2\n");
        let routed = router.route("db", &body);
        assert_eq!(routed.batches.len(), 1);
        assert_eq!(routed.batches[0].shard.replicas, vec![0, 1, 2]);
        assert_eq!(
            routed.batches[0].body.as_ptr(),
            body.as_ptr(),
            "no copy of the body"
        );
    }
}
