//! What a configuration resolves to before anything runs: the routing table, the compiled
//! statement filter, the checked password hashes. The configuration itself is inert data
//! (`config`); the checks that need its values resolved together (a route naming an unknown shard,
//! a node serving no shard, a hash the gateway cannot verify) happen here, and are reported the
//! same way, naming the YAML key.

use std::path::Path;

use crate::{
    auth,
    config::{Config, ConfigError},
    query::deny::{self, DenyRule},
    router::Router,
};

/// A validated configuration and the parts resolved from it.
#[derive(Debug, Clone)]
pub struct Blueprint {
    /// The configuration as loaded.
    pub config: Config,
    /// The routing table resolved from `nodes`, `shards` and `routes`.
    pub router: Router,
    /// `query.deny`, compiled.
    pub deny: Vec<DenyRule>,
}

impl Blueprint {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Blueprint, ConfigError> {
        Blueprint::resolve(Config::load(path)?)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Blueprint, ConfigError> {
        Blueprint::resolve(Config::from_yaml(text)?)
    }

    /// Resolves a configuration whose values were each validated.
    pub fn resolve(config: Config) -> Result<Blueprint, ConfigError> {
        auth::check_hashes(&config.auth)?;
        let deny = deny::compile(&config.query.deny)?;
        let router = Router::from_config(&config)?;
        Ok(Blueprint {
            config,
            router,
            deny,
        })
    }

    /// What `influx-gateway check-config` prints: the nodes, the shards and the routing table as
    /// the gateway resolved them.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let config = &self.config;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listen: {}{}",
            config.listen,
            if config.tls.is_some() { " (https)" } else { "" }
        );
        let _ = writeln!(out, "data_dir: {}", config.data_dir.display());
        let _ = writeln!(out, "nodes:");
        for node in &config.nodes {
            let ca = node
                .ca_file
                .as_ref()
                .map(|ca| format!(" (ca_file {})", ca.display()))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:<16} {}{ca}", node.name, node.url);
        }
        let _ = writeln!(out, "shards:");
        for shard in self.router.shards() {
            let replicas: Vec<&str> = shard
                .replicas
                .iter()
                .map(|&n| config.nodes[n].name.as_str())
                .collect();
            let _ = writeln!(out, "  {:<16} {}", shard.name, replicas.join(", "));
        }
        let _ = writeln!(out, "routes (first match wins):");
        for (i, route) in config.routes.iter().enumerate() {
            let matcher = if let Some(m) = &route.measurement {
                format!("measurement = {m:?}")
            } else if let Some(p) = &route.measurement_prefix {
                format!("measurement starts with {p:?}")
            } else {
                format!(
                    "measurement =~ /{}/",
                    route.measurement_regex.as_deref().unwrap_or_default()
                )
            };
            let target = match (&route.shard, &route.by_tag) {
                (Some(shard), _) => format!("shard {shard}"),
                (None, Some(tag)) => {
                    let shards = route
                        .shards
                        .as_ref()
                        .map_or("every shard".to_owned(), |s| s.join(", "));
                    format!("by tag {tag:?} over {shards}")
                }
                (None, None) => "?".to_owned(),
            };
            let _ = writeln!(out, "  {}. {matcher} -> {target}", i + 1);
        }
        let fallback = if self.router.is_sharded() {
            "stable hash of (db, measurement) over every shard"
        } else {
            "every node (one shard)"
        };
        let _ = writeln!(out, "  otherwise: {fallback}");
        let _ = writeln!(
            out,
            "auth: {}",
            if config.auth.enabled {
                format!("{} gateway users", config.auth.users.len())
            } else {
                "credentials pass through to the nodes".to_owned()
            }
        );
        let _ = writeln!(out, "query.deny: {} rules", config.query.deny.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "nodes:\n  - name: a\n    url: http://127.0.0.1:8086\n";

    fn error_of(yaml: &str) -> String {
        Blueprint::from_yaml(yaml).unwrap_err().to_string()
    }

    #[test]
    fn the_repository_example_is_valid() {
        let text = include_str!("../config.yaml");
        let blueprint = Blueprint::from_yaml(text).unwrap();
        assert_eq!(blueprint.config.nodes.len(), 3);
    }

    #[test]
    fn errors_name_the_key() {
        let two = |second_url: &str| {
            format!(
                "nodes:\n  - name: a\n    url: http://127.0.0.1:1\n  - name: b\n    url: {second_url}\n"
            )
        };
        assert_eq!(
            error_of(&two("notaurl")),
            r#"nodes[1].url: "notaurl" is not an http(s) URL"#
        );
        assert!(error_of(&two("ftp://x")).starts_with("nodes[1].url: "));
        assert!(error_of("nodes: []\n").starts_with("nodes: at least one node"));
        assert!(error_of("listen: 0.0.0.0:1\n").starts_with("nodes: required, but missing"));
        let dup = "nodes:\n  - name: a\n    url: http://h:1\n  - name: a\n    url: http://h:2\n";
        assert_eq!(
            error_of(dup),
            r#"nodes[1].name: duplicate node name "a" (also nodes[0])"#
        );
        let unknown = format!("{MINIMAL}helth:\n  interval: 5s\n");
        assert!(
            error_of(&unknown).starts_with("helth: unknown key"),
            "{}",
            error_of(&unknown)
        );
        let nested = format!("{MINIMAL}health:\n  intervl: 5s\n");
        assert!(
            error_of(&nested).starts_with("health.intervl: unknown key"),
            "{}",
            error_of(&nested)
        );
        let duration = format!("{MINIMAL}health:\n  interval: 5 parsecs\n");
        assert!(
            error_of(&duration).starts_with("health.interval: "),
            "{}",
            error_of(&duration)
        );
        let bare = format!("{MINIMAL}write:\n  timeout: 10\n");
        assert!(
            error_of(&bare).contains("has no unit (write it with one, e.g. \"10s\")"),
            "{}",
            error_of(&bare)
        );
        let deny = format!("{MINIMAL}query:\n  deny: [GRANT, \"DROP *\"]\n");
        assert!(
            error_of(&deny)
                .starts_with("query.deny: \"DROP *\" is not a statement's leading keywords"),
            "{}",
            error_of(&deny)
        );
        let level = format!("{MINIMAL}write:\n  consistency: two\n");
        assert!(error_of(&level).starts_with("write.consistency: unknown variant `two`"));
        let zero = format!("{MINIMAL}write:\n  mailbox_capacity: 0\n");
        assert_eq!(
            error_of(&zero),
            "write.mailbox_capacity: must be greater than zero"
        );
        let backoff = format!("{MINIMAL}retry:\n  initial_backoff: 1s\n  max_backoff: 10ms\n");
        assert!(error_of(&backoff).starts_with("retry.max_backoff: 10ms is shorter"));
        let listen = format!("{MINIMAL}listen: nonsense\n");
        assert!(
            error_of(&listen).starts_with("listen: \"nonsense\""),
            "{}",
            error_of(&listen)
        );
    }
}
