//! Building the router from the configuration: `shards:` resolved against `nodes:`, `routes:`
//! against `shards:`, every error naming the key at fault.

use std::{collections::HashMap, fmt};

use regex::Regex;

use super::{Layout, Router, Shard, ShardId};
use crate::{
    config::{Config, ConfigError, RouteConfig, ShardConfig},
    line_protocol::{Escaped, TagKey},
    node::NodeId,
};

impl Router {
    /// Resolves `shards:` and `routes:` against `nodes:`; errors name the key at fault.
    pub fn from_config(config: &Config) -> Result<Router, ConfigError> {
        if config.shards.is_empty() && !config.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "routes need shards: define `shards:` first",
            ));
        }
        let names: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        resolve(&Layout::of(config), &names, Strictness::Config)
    }

    /// The router of a layout stored earlier, over the nodes configured now: a replica no longer
    /// configured is left out (its data cannot be read any more), and a node may serve no shard.
    pub fn from_layout(layout: &Layout, nodes: &[&str]) -> Result<Router, ConfigError> {
        resolve(layout, nodes, Strictness::Stored)
    }
}

/// How much of a layout must hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// A configuration being loaded: every name known, every node serving a shard.
    Config,
    /// A layout stored by an earlier run, read against today's nodes.
    Stored,
}

fn resolve(layout: &Layout, nodes: &[&str], strictness: Strictness) -> Result<Router, ConfigError> {
    let node_ids: HashMap<&str, NodeId> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let shards = resolve_shards(&layout.shards, nodes, &node_ids, strictness)?;
    let shard_ids: HashMap<&str, ShardId> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let routes = layout
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| resolve_route(i, route, &shard_ids))
        .collect::<Result<_, _>>()?;
    Ok(Router {
        all: (0..shards.len()).collect(),
        shards,
        routes,
    })
}

/// How a route recognises a measurement.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Matcher {
    /// Whether `measurement`, as written in a line, is one this route takes.
    pub(super) fn matches(&self, measurement: Escaped<'_>) -> bool {
        match self {
            Matcher::Exact(name) => measurement.eq_str(name),
            Matcher::Prefix(prefix) => measurement.starts_with_str(prefix),
            Matcher::Regex(re) => re.is_match(&measurement.unescaped()),
        }
    }

    /// Whether `measurement`, unescaped, is one this route takes.
    pub(super) fn matches_str(&self, measurement: &str) -> bool {
        match self {
            Matcher::Exact(name) => measurement == name,
            Matcher::Prefix(prefix) => measurement.starts_with(prefix.as_str()),
            Matcher::Regex(re) => re.is_match(measurement),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(name) => write!(f, "measurement {name:?}"),
            Matcher::Prefix(prefix) => write!(f, "measurement_prefix {prefix:?}"),
            Matcher::Regex(re) => write!(f, "measurement_regex {:?}", re.as_str()),
        }
    }
}

/// Where a route sends the measurements it matches.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Shard(ShardId),
    ByTag { key: TagKey, shards: Vec<ShardId> },
}

/// One entry of `routes:`, resolved: the first whose matcher takes a measurement places it.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) matcher: Matcher,
    pub(super) target: Target,
}

fn resolve_shards(
    configured: &[ShardConfig],
    nodes: &[&str],
    node_ids: &HashMap<&str, NodeId>,
    strictness: Strictness,
) -> Result<Vec<Shard>, ConfigError> {
    let mut shards: Vec<Shard> = Vec::with_capacity(configured.len());
    let mut served = vec![false; nodes.len()];
    for (i, shard) in configured.iter().enumerate() {
        let key = format!("shards[{i}]");
        if shard.name.trim().is_empty() || shard.name.trim() != shard.name {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!(
                    "{:?} must be a non-empty name without spaces at its ends",
                    shard.name
                ),
            ));
        }
        if let Some(j) = shards.iter().position(|s| s.name == shard.name) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("duplicate shard name {:?} (also shards[{j}])", shard.name),
            ));
        }
        if shard.replicas.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.replicas"),
                "a shard needs at least one replica",
            ));
        }
        let mut replicas = Vec::with_capacity(shard.replicas.len());
        for (r, name) in shard.replicas.iter().enumerate() {
            let Some(&node) = node_ids.get(name.as_str()) else {
                if strictness == Strictness::Stored {
                    continue;
                }
                return Err(ConfigError::invalid(
                    format!("{key}.replicas[{r}]"),
                    format!("{name:?} is not the name of a node in `nodes`"),
                ));
            };
            if replicas.contains(&node) {
                return Err(ConfigError::invalid(
                    format!("{key}.replicas[{r}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
            served[node] = true;
            replicas.push(node);
        }
        if replicas.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.replicas"),
                "none of its replicas is configured any more",
            ));
        }
        shards.push(Shard::new(&shard.name, replicas));
    }
    if let Some(idle) = served.iter().position(|s| !s) {
        if strictness == Strictness::Config {
            return Err(ConfigError::invalid(
                format!("nodes[{idle}]"),
                format!(
                    "{:?} is a replica of no shard: add it to one, or remove it",
                    nodes[idle]
                ),
            ));
        }
    }
    Ok(shards)
}

fn resolve_route(
    i: usize,
    route: &RouteConfig,
    shard_ids: &HashMap<&str, ShardId>,
) -> Result<Route, ConfigError> {
    let key = format!("routes[{i}]");
    let shard = |field: &str, name: &str| {
        shard_ids.get(name).copied().ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}.{field}"),
                format!("{name:?} is not the name of a shard in `shards`"),
            )
        })
    };
    let matcher = match (
        &route.measurement,
        &route.measurement_prefix,
        &route.measurement_regex,
    ) {
        (Some(name), None, None) => Matcher::Exact(name.clone()),
        (None, Some(prefix), None) => Matcher::Prefix(prefix.clone()),
        (None, None, Some(re)) => Matcher::Regex(Regex::new(re).map_err(|e| {
            ConfigError::invalid(
                format!("{key}.measurement_regex"),
                format!("{re:?} is not a valid regular expression: {e}"),
            )
        })?),
        _ => {
            return Err(ConfigError::invalid(
                key,
                "needs exactly one of measurement, measurement_prefix, measurement_regex",
            ))
        }
    };
    let target = match (&route.shard, &route.by_tag, &route.shards) {
        (Some(name), None, None) => Target::Shard(shard("shard", name)?),
        (None, Some(tag), shards) => {
            if tag.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.by_tag"),
                    "must name a tag key",
                ));
            }
            let shards = match shards {
                None => (0..shard_ids.len()).collect(),
                Some(names) if names.is_empty() => {
                    return Err(ConfigError::invalid(
                        format!("{key}.shards"),
                        "must list at least one shard",
                    ))
                }
                Some(names) => {
                    let mut ids: Vec<ShardId> = Vec::with_capacity(names.len());
                    for (j, name) in names.iter().enumerate() {
                        let id = shard(&format!("shards[{j}]"), name)?;
                        if ids.contains(&id) {
                            return Err(ConfigError::invalid(
                                format!("{key}.shards[{j}]"),
                                format!("{name:?} is listed twice"),
                            ));
                        }
                        ids.push(id);
                    }
                    ids
                }
            };
            Target::ByTag {
                key: TagKey::new(tag),
                shards,
            }
        }
        (None, None, _) => {
            return Err(ConfigError::invalid(
                key,
                "needs a target: `shard`, or `by_tag` (with `shards`)",
            ))
        }
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
            return Err(ConfigError::invalid(
                key,
                "give either `shard`, or `by_tag` with `shards`, not both",
            ))
        }
    };
    Ok(Route { matcher, target })
}

#[cfg(test)]
mod tests {
    use crate::router::tests::{error_of, router, TWO};

    #[test]
    fn configuration_errors_name_the_key() {
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx9]\n"),
            "shards[0].replicas[1]: \"influx9\" is not the name of a node in `nodes`"
        );
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    shard: s3\n"
            )),
            "routes[0].shard: \"s3\" is not the name of a shard in `shards`"
        );
        assert!(error_of(&format!(
            "{TWO}routes:\n  - measurement_regex: \"(\"\n    shard: s1\n"
        ))
        .starts_with("routes[0].measurement_regex: \"(\" is not a valid regular expression"));
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    measurement_prefix: c\n    shard: s1\n"
            )),
            "routes[0]: needs exactly one of measurement, measurement_prefix, measurement_regex"
        );
        assert_eq!(
            error_of(&format!("{TWO}routes:\n  - measurement: cpu\n")),
            "routes[0]: needs a target: `shard`, or `by_tag` (with `shards`)"
        );
        assert_eq!(
            error_of(&format!(
                "{TWO}routes:\n  - measurement: cpu\n    by_tag: h\n    shards: [s1, s4]\n"
            )),
            "routes[0].shards[1]: \"s4\" is not the name of a shard in `shards`"
        );
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx2, influx3]\n"),
            "nodes[3]: \"influx4\" is a replica of no shard: add it to one, or remove it"
        );
        assert_eq!(
            error_of("shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s1\n    replicas: [influx3, influx4]\n"),
            "shards[1].name: duplicate shard name \"s1\" (also shards[0])"
        );
        assert_eq!(
            error_of("routes:\n  - measurement: cpu\n    shard: s1\n"),
            "routes: routes need shards: define `shards:` first"
        );
        let typo = error_of(&format!("{TWO}routes:\n  - measurment: cpu\n"));
        assert!(
            typo.starts_with("routes[0].measurment: unknown key"),
            "{typo}"
        );
        // A node may serve several shards.
        let overlapping = router("shards:\n  - name: s1\n    replicas: [influx1, influx2]\n  - name: s2\n    replicas: [influx2, influx3, influx4]\n");
        assert_eq!(overlapping.shards()[1].replicas, vec![1, 2, 3]);
    }
}
