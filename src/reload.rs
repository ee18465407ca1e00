//! SIGHUP: the configuration file is read again; what can change while running is applied
//! (`health`, `retry`, `limits`, `log_level`), and a change to anything else — nodes, shards,
//! routes, the listener, queues, users — is reported as needing a restart and ignored until then.

use std::path::PathBuf;

use serde_yaml::Value;

use crate::{blueprint::Blueprint, config::Config, gateway::Gateway};

/// The top-level keys a reload applies.
pub const RELOADABLE: [&str; 4] = ["health", "retry", "limits", "log_level"];

/// The configuration file and what of it is in force.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// The YAML in force: the start-up file with the reloadable keys of later reloads.
    running: Value,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Reloadable keys whose new values are now in force.
    pub applied: Vec<String>,
    /// Keys that changed but need a restart; their old values stay in force.
    pub restart_required: Vec<String>,
    /// The file's shards and routes place data elsewhere than those in force: once a restart
    /// applies them, a rebalance is needed.
    pub placement_changed: bool,
}

impl Reloader {
    /// Starts from the configuration the gateway was started with, read from `path`.
    pub fn new(path: PathBuf, config: &Config) -> Self {
        Reloader {
            path,
            running: config.source.clone(),
        }
    }

    /// Reads the file again and applies what can be; a file that does not load changes nothing.
    pub fn reload(&mut self, gateway: &Gateway) -> Result<Outcome, String> {
        let config = Blueprint::load(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?
            .config;
        let mut outcome = compare(&self.running, &config.source);
        let layout = crate::router::Layout::of(&config);
        outcome.placement_changed = &layout != gateway.layouts().current_layout();
        gateway
            .layouts()
            .set_in_file((outcome.placement_changed).then_some(layout));
        if !outcome.applied.is_empty() {
            gateway.retune(&config);
            log::set_max_level(config.log_filter());
            for key in &outcome.applied {
                set(&mut self.running, key, get(&config.source, key));
            }
        }
        Ok(outcome)
    }
}

fn get(yaml: &Value, key: &str) -> Value {
    yaml.get(key).cloned().unwrap_or(Value::Null)
}

fn set(yaml: &mut Value, key: &str, value: Value) {
    if let Value::Mapping(map) = yaml {
        map.insert(Value::String(key.to_owned()), value);
    }
}

/// Which top-level keys differ between `running` and `new`, split into what a reload applies and
/// what needs a restart.
fn compare(running: &Value, new: &Value) -> Outcome {
    let mut keys: Vec<String> = [running, new]
        .iter()
        .filter_map(|v| v.as_mapping())
        .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)))
        .collect();
    keys.sort();
    keys.dedup();
    let mut outcome = Outcome::default();
    for key in keys {
        if get(running, &key) == get(new, &key) {
            continue;
        }
        if RELOADABLE.contains(&key.as_str()) {
            outcome.applied.push(key);
        } else {
            outcome.restart_required.push(key);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn safe_changes_apply_and_the_rest_wait_for_a_restart() {
        let running = yaml("nodes: [{name: a, url: 'http://h:1'}]\nretry: {max_backoff: 30s}\n");
        let new = yaml(
            "nodes: [{name: b, url: 'http://h:1'}]\nretry: {max_backoff: 5s}\nlimits: {max_statements: 3}\nlog_level: debug\n",
        );
        let outcome = compare(&running, &new);
        assert_eq!(outcome.applied, ["limits", "log_level", "retry"]);
        assert_eq!(outcome.restart_required, ["nodes"]);
        assert_eq!(compare(&running, &running), Outcome::default());
    }
}
