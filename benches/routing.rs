//! The cost of routing a realistic batch: 5,000 points, 100 series, three fields.
//!
//! `scan/*` compares the gateway's scanner (what routing needs: each line's measurement and one
//! tag) with a full parse by the `influxdb-line-protocol` crate; `route/*` is the whole split of a
//! body into per-shard bodies in each routing mode. Run with `cargo bench --bench routing`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use influx_gateway::{
    config::Config,
    line_protocol::{lines, LineKind},
};

const POINTS: usize = 5_000;

/// Four measurements, 100 series (25 hosts each), three fields, one timestamp per point.
fn batch() -> Bytes {
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

fn config(sharding: &str) -> Config {
    let yaml = format!(
        "nodes:\n  - {{name: a, url: \"http://127.0.0.1:1\"}}\n  - {{name: b, url: \"http://127.0.0.1:2\"}}\n  - {{name: c, url: \"http://127.0.0.1:3\"}}\n{sharding}"
    );
    match Config::from_yaml(&yaml) {
        Ok(config) => config,
        Err(e) => panic!("bench configuration: {e}"),
    }
}

fn scan(c: &mut Criterion) {
    let body = batch();
    let text = std::str::from_utf8(&body).unwrap_or_default().to_owned();
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("gateway scanner", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for line in lines(&body) {
                if let LineKind::Point(key) = line.kind {
                    found += key.measurement().raw().len();
                    found += key.tag("customer_id").map_or(0, |v| v.raw().len());
                }
            }
            found
        })
    });
    group.bench_function("influxdb-line-protocol full parse", |b| {
        b.iter(|| {
            influxdb_line_protocol::parse_lines(&text)
                .filter_map(Result::ok)
                .map(|l| l.series.measurement.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn route(c: &mut Criterion) {
    let body = batch();
    let modes = [
        ("replication only", config("")),
        (
            "measurement shards",
            config("shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\n  - {name: s3, replicas: [c]}\nroutes:\n  - {measurement: cpu, shard: s1}\n  - {measurement_prefix: disk, shard: s2}\n  - {measurement_regex: \"^net_\", shard: s3}\n"),
        ),
        (
            "tag shards",
            config("shards:\n  - {name: s1, replicas: [a]}\n  - {name: s2, replicas: [b]}\n  - {name: s3, replicas: [c]}\nroutes:\n  - {measurement_regex: \".\", by_tag: customer_id}\n"),
        ),
    ];
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(POINTS as u64));
    for (name, config) in &modes {
        group.bench_with_input(BenchmarkId::from_parameter(name), config, |b, config| {
            b.iter(|| config.router.route("telegraf", &body).batches.len())
        });
    }
    group.finish();
}

criterion_group!(benches, scan, route);
criterion_main!(benches);
