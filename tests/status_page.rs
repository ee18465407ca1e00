//! The status page at `GET /`, loaded in headless Chromium (Debian's `chromium`) against a live
//! gateway with one real node SIGKILLed while writes go on: the page must show that node down and
//! its queue growing. A screenshot is kept under `target/test-artifacts/`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::Cluster;

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| common::which(name))
        .unwrap_or_else(|| {
            panic!("chromium is not on PATH: install it with `apt-get install chromium` (or run `bash .ci/run`)")
        })
}

/// Runs headless Chromium on `url` with `extra` arguments; virtual time lets the page's timers
/// run through about 15 refreshes without waiting for them in real time.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=30000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The attributes of the `<tr>` for `node` in the dumped DOM.
fn node_row<'d>(dom: &'d str, node: &str) -> &'d str {
    let start = dom
        .find(&format!("data-node=\"{node}\""))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{dom}"));
    let row_start = dom[..start].rfind("<tr").unwrap_or(start);
    let end = dom[start..].find('>').map_or(dom.len(), |e| start + e);
    &dom[row_start..end]
}

fn attribute<'r>(row: &'r str, name: &str) -> &'r str {
    let key = format!("{name}=\"");
    let start = row
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {row}"))
        + key.len();
    let end = row[start..].find('"').map_or(row.len(), |e| start + e);
    &row[start..end]
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

#[test]
fn the_status_page_shows_a_killed_node_down_with_its_queue_growing() {
    let mut cluster = Cluster::start(2, "health:\n  interval: 300ms\n  timeout: 300ms\n");
    cluster.create_database("page");
    let gw = cluster.gateway.url();
    cluster.nodes[1].kill();

    // Writes go on while the page is open, so that the killed node's queue keeps growing.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, url) = (Arc::clone(&stop), format!("{gw}/write?db=page"));
        thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(120) {
                let reply = common::post(&url, format!("m v={i} {i}").as_bytes(), &[]);
                assert_eq!(reply.status, 204, "{}", reply.body);
                i += 1;
                thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    assert!(common::eventually(Duration::from_secs(10), || {
        cluster.gateway.node_state("influx2") == "down"
    }));

    let page = common::get(&format!("{gw}/"));
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    for external in [
        "<script src",
        "<link",
        "@import",
        "url(",
        "http://",
        "https://",
    ] {
        assert!(
            !page.body.contains(external),
            "the page loads nothing from elsewhere: {external}"
        );
    }

    let dom = headless(&format!("{gw}/"), &["--dump-dom"]);
    let down = node_row(&dom, "influx2");
    assert_eq!(attribute(down, "data-state"), "down", "{down}");
    assert_eq!(attribute(down, "data-queue-trend"), "growing", "{down}");
    let entries: u64 = attribute(down, "data-queue-entries")
        .parse()
        .expect("a count");
    assert!(entries > 0, "{down}");
    let up = node_row(&dom, "influx1");
    assert_eq!(attribute(up, "data-state"), "up", "{up}");
    assert_eq!(attribute(up, "data-queue-entries"), "0", "{up}");
    assert!(dom.contains("Not up: influx2"), "the banner names the node");

    let screenshot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    headless(
        &format!("{gw}/"),
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,900",
        ],
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}",
        screenshot.display()
    );
    eprintln!("status page screenshot: {}", screenshot.display());

    stop.store(true, Ordering::Release);
    let written = writer.join().expect("writer thread");
    assert!(written > 0);
}
