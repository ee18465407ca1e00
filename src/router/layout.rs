//! Where data is placed, as data: the shards and the routes of a configuration, kept by the
//! gateway so that it knows where the points already written are when the configuration changes.

use serde::{Deserialize, Serialize};

use crate::config::{Config, RouteConfig, ShardConfig};

/// The name of the one shard of a configuration without `shards:`.
pub const ALL: &str = "all";

/// The shards and routes of a configuration; one without `shards:` is one shard of every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The shards, each with its replicas by name.
    pub shards: Vec<ShardConfig>,
    /// The routes, first match first.
    pub routes: Vec<RouteConfig>,
}

impl Layout {
    /// The layout `config` places points by.
    pub fn of(config: &Config) -> Layout {
        let shards = if config.shards.is_empty() {
            vec![ShardConfig {
                name: ALL.to_owned(),
                replicas: config.nodes.iter().map(|n| n.name.clone()).collect(),
            }]
        } else {
            config.shards.clone()
        };
        Layout {
            shards,
            routes: config.routes.clone(),
        }
    }

    /// A line per shard, for logs: `s1 = [a, b]; s2 = [c]`.
    pub fn describe(&self) -> String {
        self.shards
            .iter()
            .map(|s| format!("{} = [{}]", s.name, s.replicas.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Router;

    fn config(text: &str) -> Config {
        Config::from_yaml(text).unwrap()
    }

    const NODES: &str = "nodes:\n  - {name: a, url: 'http://127.0.0.1:1'}\n  - {name: b, url: 'http://127.0.0.1:2'}\n  - {name: c, url: 'http://127.0.0.1:3'}\n";

    #[test]
    fn an_unsharded_configuration_is_one_shard_of_every_node() {
        let layout = Layout::of(&config(NODES));
        assert_eq!(layout.shards.len(), 1);
        assert_eq!(layout.shards[0].replicas, ["a", "b", "c"]);
        let router = Router::from_layout(&layout, &["a", "b", "c"]).unwrap();
        assert!(!router.is_sharded());
        assert_eq!(router.shards()[0].replicas, [0, 1, 2]);
    }

    #[test]
    fn a_stored_layout_survives_nodes_added_and_removed() {
        let layout = Layout::of(&config(&format!(
            "{NODES}shards:\n  - {{name: s1, replicas: [a, b]}}\n  - {{name: s2, replicas: [c]}}\nroutes:\n  - {{measurement: cpu, shard: s2}}\n"
        )));
        let stored = serde_json::to_string(&layout).unwrap();
        let layout: Layout = serde_json::from_str(&stored).unwrap();
        // `b` is gone and `d` came: ids are today's, `b` is left out, `d` serves nothing yet.
        let router = Router::from_layout(&layout, &["d", "a", "c"]).unwrap();
        assert_eq!(router.shards()[0].replicas, [1]);
        assert_eq!(router.shards()[1].replicas, [2]);
        assert_eq!(router.placement("db", "cpu").shards(), [1]);
        // A shard none of whose replicas is left cannot be read: an error, not an empty shard.
        assert!(Router::from_layout(&layout, &["a", "b"]).is_err());
    }
}
