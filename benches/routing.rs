//! The cost of routing a realistic batch: 5,000 points, 100 series, three fields.
//!
//! `scan/*` compares the gateway's scanner (what routing needs: each line's measurement and one
//! tag) with a full parse by the `influxdb-line-protocol` crate; `route/*` is the whole pass a write
//! gets before the nodes' actors (points, time span, the split into per-shard bodies) in each
//! routing mode. Run with `cargo bench --bench routing`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use influx_gateway::line_protocol::{lines, LineKind, TagKey};

#[path = "shared/workload.rs"]
mod workload;

use workload::{batch, modes, POINTS};

fn scan(c: &mut Criterion) {
    let body = batch();
    let text = std::str::from_utf8(&body).unwrap_or_default().to_owned();
    let customer = TagKey::new("customer_id");
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("gateway scanner", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for line in lines(&body) {
                if let LineKind::Point(key) = line.kind {
                    found += key.measurement().raw().len();
                    found += key.tag_value(&customer).map_or(0, |v| v.raw().len());
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
    let modes = modes();
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(POINTS as u64));
    for (name, config) in &modes {
        group.bench_with_input(BenchmarkId::from_parameter(name), config, |b, config| {
            b.iter(|| config.router.route("telegraf", &body, None).batches.len())
        });
    }
    group.finish();
}

criterion_group!(benches, scan, route);
criterion_main!(benches);
