//! What the fuzz targets share: the tests' two-shard cluster, which reaches no node, with each
//! target's own routes.

use influx_gateway::blueprint::Blueprint;

/// The two-shard fixture with `rest` (routes, auth: more YAML) appended.
pub fn blueprint(rest: &str) -> Blueprint {
    let yaml = format!(
        "{}{rest}",
        include_str!("../../tests/fixtures/two-shards.yaml")
    );
    Blueprint::from_yaml(&yaml).expect("fuzz configuration")
}
