//! The cost of routing a realistic batch: 5,000 points, 100 series, three fields.
//!
//! `scan/*` compares the gateway's scanner (what routing needs: each line's measurement and one
//! tag) with a full parse by the `influxdb-line-protocol` crate; `name end/*` the SSE2 probe that
//! finds where a name ends against the byte loop, on the benchmark's batch and on pathological
//! bodies (200 tags a line, escaped names, quoted newlines); `newlines/*` the 64-byte newline
//! masks against `memchr` a line and the byte loop, on the same bodies and on short and very long
//! lines; `route/*` is the whole pass a write
//! gets before the nodes' actors (points, time span, the split into per-shard bodies) in each
//! routing mode. Run with `cargo bench --bench routing`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use influx_gateway::line_protocol::{line_ends, lines, simd, LineEnds, LineKind, TagKey};

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

/// Bodies that stress the scanner: the benchmark's, lines of 200 tags, names full of escapes,
/// and string fields holding newlines.
fn pathological() -> Vec<(&'static str, Bytes)> {
    let long: String = (0..200)
        .map(|l| {
            let tags: String = (0..200).map(|t| format!(",tag{t}=value{l}")).collect();
            format!("wide{tags} v=1 {l}\n")
        })
        .collect();
    let escaped: String = (0..5_000)
        .map(|i| format!("a\\ b\\,c\\ d\\ e{i},host=h\\ {i} v=1 {i}\n"))
        .collect();
    let quoted: String = (0..5_000)
        .map(|i| format!("log,host=h{i} msg=\"line one\nline two, and = three\" {i}\n"))
        .collect();
    vec![
        ("benchmark batch", batch()),
        ("200 tags a line", Bytes::from(long)),
        ("escaped names", Bytes::from(escaped)),
        ("quoted newlines", Bytes::from(quoted)),
    ]
}

/// The name-end probe of the scanner, SSE2 against the byte loop it replaced, at every line start
/// of each body; and the whole scan of each body for scale.
fn name_end(c: &mut Criterion) {
    let customer = TagKey::new("customer_id");
    let mut group = c.benchmark_group("name end");
    for (name, body) in pathological() {
        let starts: Vec<usize> = std::iter::once(0)
            .chain(memchr_newlines(&body))
            .filter(|&s| s + 16 <= body.len())
            .collect();
        group.throughput(Throughput::Elements(starts.len() as u64));
        let chunk = |s: usize| -> &[u8; 16] { body[s..s + 16].try_into().unwrap_or(&[0; 16]) };
        group.bench_with_input(BenchmarkId::new("simd", name), &starts, |b, starts| {
            b.iter(|| {
                starts
                    .iter()
                    .map(|&s| simd::separators(chunk(s)).trailing_zeros())
                    .sum::<u32>()
            })
        });
        group.bench_with_input(BenchmarkId::new("scalar", name), &starts, |b, starts| {
            b.iter(|| {
                starts
                    .iter()
                    .map(|&s| simd::scalar(chunk(s)).trailing_zeros())
                    .sum::<u32>()
            })
        });
        group.bench_with_input(BenchmarkId::new("whole scan", name), &body, |b, body| {
            b.iter(|| {
                lines(body)
                    .filter_map(|l| match l.kind {
                        LineKind::Point(key) => key.tag_value(&customer).map(|v| v.raw().len()),
                        _ => None,
                    })
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

/// Where each line of each body ends: the 64-byte masks (`line_ends`: AVX2 where the CPU has it,
/// up to the first block with a quote or a backslash, then InfluxDB's rules line by line), the rules
/// from the first line (`LineEnds::by_the_rules`: a `memchr` a line, and a byte loop for a line
/// with a quote or a backslash); and every newline by `memchr_iter` and by a byte loop, which are
/// the lines' ends only in a body without quotes and backslashes. Beside the pathological bodies,
/// 100,000 points of 6 bytes (a mask serves ten lines) and one line of 400 kB (a mask serves none).
fn newlines(c: &mut Criterion) {
    let mut bodies = pathological();
    bodies.push(("6-byte lines", Bytes::from("m v=1\n".repeat(100_000))));
    bodies.push(("one 400 kB line", {
        let mut line = "m ".to_owned() + &"v=1,".repeat(100_000);
        line.push_str("w=1\n");
        Bytes::from(line)
    }));
    let mut group = c.benchmark_group("newlines");
    for (name, body) in bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("simd masks", name), &body, |b, body| {
            b.iter(|| line_ends(body).fold(0usize, |sum, line| sum ^ line.end))
        });
        group.bench_with_input(BenchmarkId::new("by the rules", name), &body, |b, body| {
            b.iter(|| LineEnds::by_the_rules(body, 0).fold(0usize, |sum, line| sum ^ line.end))
        });
        group.bench_with_input(BenchmarkId::new("memchr", name), &body, |b, body| {
            b.iter(|| memchr::memchr_iter(b'\n', body).fold(0usize, |sum, at| sum ^ at))
        });
        group.bench_with_input(BenchmarkId::new("byte loop", name), &body, |b, body| {
            b.iter(|| memchr_newlines(body).fold(0usize, |sum, at| sum ^ (at - 1)))
        });
    }
    group.finish();
}

/// Where each line after the first starts.
fn memchr_newlines(body: &[u8]) -> impl Iterator<Item = usize> + '_ {
    body.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
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

criterion_group!(benches, scan, name_end, newlines, route);
criterion_main!(benches);
