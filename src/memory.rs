//! How the gateway uses glibc's allocator: few arenas, large blocks kept, free memory returned on
//! a timer rather than on every `free`.
//!
//! The write path allocates and frees bodies of hundreds of kilobytes many times a second: the
//! request body on an HTTP worker, freed on a node actor's thread, awc's write buffer per node, the
//! per-shard splits. glibc's defaults serve them badly both ways:
//! - every thread gets an arena of its own, and each arena kept its peak;
//! - with its dynamic thresholds, glibc gave freed top-of-heap memory back to the kernel within
//!   moments and faulted it in again for the next body: page faults were a tenth of a replicating
//!   gateway's samples in `perf`;
//! - memory freed in the middle of an arena was never given back at all: with a node down, sled's
//!   buffers and the bodies fragmented the arenas to 105–129 MiB of RSS over a minute.
//!
//! So: two arenas; blocks below 32 MiB (every body the limits allow) come from the arenas, and up
//! to 8 MiB at an arena's top stays there for the next body; and a thread calls `malloc_trim`
//! every [`TRIM_INTERVAL`], returning whatever is free, fragmented or not (the top included: the
//! 8 MiB is kept between two trims, which is where the page faults were). Measured with
//! `bench/run.py`'s workloads (2026-12-01): 0.64 → 0.51–0.54 ms of CPU per 5,000-point request
//! replicated to three null sinks, and a peak RSS of 87.7–92.6 MiB instead of 105–129 MiB over
//! 60 s with one of three nodes down. The thresholds alone, without the trim, had cost 40 MiB.
//!
//! Each setting yields to its environment variable (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_TRIM_THRESHOLD_`), and `GLIBC_TUNABLES` naming any `glibc.malloc.` tunable disables
//! them all, the trim included, so an operator can still decide.

use std::time::Duration;

/// How often free memory is given back to the kernel.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Applies the settings above and starts the trim; call early in `main`, so that they apply to
/// the arenas the gateway's threads create.
pub fn tune() {
    if configure() {
        start_trimming();
    }
}

/// The allocator settings without the trim thread, which wakes on the clock: for a program whose
/// instruction count must not depend on how long it ran (`examples/route_cost.rs`). False when
/// `GLIBC_TUNABLES` leaves the allocator to the operator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() -> bool {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains("glibc.malloc.") {
        return false;
    }
    let settings = [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 32 << 20),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 8 << 20),
    ];
    for (variable, parameter, value) in settings {
        if std::env::var_os(variable).is_some() {
            continue;
        }
        // SAFETY: mallopt sets a parameter of glibc's allocator under glibc's own lock; it reads
        // and writes no memory of ours.
        if unsafe { libc::mallopt(parameter, value) } == 0 {
            eprintln!(
                "influx-gateway: glibc refused mallopt({variable}, {value}); its default stays"
            );
        }
    }
    true
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn start_trimming() {
    let trimmer = std::thread::Builder::new()
        .name("malloc-trim".to_owned())
        .spawn(|| loop {
            std::thread::sleep(TRIM_INTERVAL);
            // SAFETY: malloc_trim takes each arena's lock itself; it may be called at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    if let Err(e) = trimmer {
        eprintln!(
            "influx-gateway: no malloc-trim thread ({e}): free memory stays with the process"
        );
    }
}

/// Other allocators need none of this.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() -> bool {
    false
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn start_trimming() {}
