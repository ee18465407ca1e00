//! The workload shared by the routing benchmarks (criterion in `benches/routing.rs`, instruction
//! counts in `examples/route_cost.rs`): one realistic batch and the three routing modes.

use bytes::Bytes;
use influx_gateway::blueprint::Blueprint;

pub const POINTS: usize = 5_000;

/// Four measurements, 100 series (25 hosts each), three fields, one timestamp per point.
pub fn batch() -> Bytes {
    let measurements = ["cpu", "diskio", "net_in", "http_requests"];
    let mut body = String::new();
    for i in 0..POINTS {
        let series = i % 100;
        let m = measurements[series % 4];
        body.push_str(&format!(
            "{m},host=server-{series:03},region=eu-west-{},customer_id=c{} usage={}.5,count={}i,ok=true {}\n",
            series % 3,
            series % 17,
            i % 100,
            i,
            1_600_000_000_000_000_000u64 + i as u64 * 1_000_000_000
        ));
    }
    Bytes::from(body)
}

/// The same points grouped by measurement, as Telegraf sends a batch (each input's points
/// together): the order in which consecutive lines mostly go to one shard.
#[allow(dead_code)] // Not every user of the workload measures both orders.
pub fn grouped_batch() -> Bytes {
    let batch = batch();
    let mut lines: Vec<&[u8]> = batch.split_inclusive(|&b| b == b'\n').collect();
    lines.sort_by_key(|line| line.iter().position(|&b| b == b',').map(|end| &line[..end]));
    Bytes::from(lines.concat())
}

fn config(sharding: &str) -> Blueprint {
    let yaml = format!(
        "nodes:\n  - {{name: a, url: \"http://127.0.0.1:1\"}}\n  - {{name: b, url: \"http://127.0.0.1:2\"}}\n  - {{name: c, url: \"http://127.0.0.1:3\"}}\n{sharding}"
    );
    match Blueprint::from_yaml(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("bench configuration: {e}"),
    }
}

/// The routing modes measured: replication only, measurement shards, tag shards.
pub fn modes() -> Vec<(&'static str, Blueprint)> {
    vec![
        ("replication only", config("")),
        (
            "measurement shards",
            config("shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\n  - {name: s3, replicas: [c]}\nroutes:\n  - {measurement: cpu, shard: s1}\n  - {measurement_prefix: disk, shard: s2}\n  - {measurement_regex: \"^net_\", shard: s3}\n"),
        ),
        (
            "tag shards",
            config("shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\n  - {name: s3, replicas: [c]}\nroutes:\n  - {measurement_regex: \".\", by_tag: customer_id}\n"),
        ),
    ]
}
