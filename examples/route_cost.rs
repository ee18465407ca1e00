//! Routes the benchmark batch `ITERATIONS` times in one mode, for instruction counts under
//! `valgrind --tool=callgrind`, which are repeatable where timings on a shared machine are not.
//! `bench/run.py` runs it with 1 and 11 iterations and divides the difference by 10 × 5,000
//! points, so that start-up and the workload's construction cancel out.
//!
//! `cargo build --release --example route_cost && target/release/examples/route_cost MODE ITERATIONS
//! [grouped]` with MODE one of `replication`, `measurement`, `tag`; `grouped` routes the same
//! points grouped by measurement, as Telegraf sends them, instead of interleaved. It also prints
//! the wall time per batch.

#[path = "../benches/shared/workload.rs"]
mod workload;

use std::{process::ExitCode, time::Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(iterations)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: route_cost replication|measurement|tag ITERATIONS [grouped]");
        return ExitCode::FAILURE;
    };
    let index = match mode.as_str() {
        "replication" => 0,
        "measurement" => 1,
        "tag" => 2,
        other => {
            eprintln!("unknown mode {other:?}");
            return ExitCode::FAILURE;
        }
    };
    // The gateway's allocator settings: without them every batch's shard buffers are pages
    // faulted in afresh, which the gateway does not pay. Not its trim thread, which wakes on the
    // clock and would make the instruction count depend on how long the run took.
    influx_gateway::memory::configure();
    let modes = workload::modes();
    let config = &modes[index].1;
    let grouped = args.get(3).is_some_and(|a| a == "grouped");
    let body = if grouped {
        workload::grouped_batch()
    } else {
        workload::batch()
    };
    let mut batches = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        // What a write costs before the nodes' actors get it: the one pass that counts points,
        // reads the time span and splits by shard.
        batches += std::hint::black_box(config.router.route("telegraf", &body, None))
            .batches
            .len();
    }
    let elapsed = started.elapsed();
    println!(
        "{mode}{}: {iterations} × {} points, {batches} shard batches, {:.1} µs a batch",
        if grouped { " (grouped)" } else { "" },
        workload::POINTS,
        elapsed.as_secs_f64() * 1e6 / iterations.max(1) as f64
    );
    ExitCode::SUCCESS
}
