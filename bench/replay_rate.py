#!/usr/bin/env python3
"""Measures how fast a node's backlog is replayed into a real influxd, against writing the same
points straight to it, in one run on one machine.

    cargo build --release && python3 bench/replay_rate.py [--points 1000000] [--batch 5000]

1. Writes the points straight to influxd B (the baseline), in batches, one connection.
2. Kills B (SIGKILL), writes the same points through the gateway (A accepts, B's copies queue).
3. Restarts B and times the replay until B's queue is empty and B holds every point.
4. Does 2 and 3 again (--outages): a queue that reuses the space of a drained backlog stays at the
   size of the largest backlog instead of growing with every outage.
Prints points/s for both, their ratio, and the queue's disk use before and after each drain.
Everything runs on 127.0.0.1 with temporary directories; every loop is bounded.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEWAY = os.path.join(ROOT, "target", "release", "influx-gateway")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, data=None, method=None, timeout=120):
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ping(url, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if request(url + "/ping", timeout=1)[0] == 204:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{url} did not answer /ping within {limit}s")


class Influxd:
    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The template the test harness and scripts/local-cluster start their nodes with too.
        with open(os.path.join(ROOT, "scripts", "influxd.conf.template")) as f:
            config = f.read()
        for key, value in (("@RPC_PORT@", free_port()), ("@DIR@", self.dir),
                           ("@HTTP_PORT@", self.port), ("@HTTP_EXTRA@", "")):
            config = config.replace(key, str(value))
        with open(os.path.join(self.dir, "influxdb.conf"), "w") as f:
            f.write(config)
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "influxd.log"), "a")
        self.proc = subprocess.Popen(
            ["influxd", "-config", os.path.join(self.dir, "influxdb.conf")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_ping(self.url)

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def count(self, db):
        q = urllib.parse.urlencode({"db": db, "q": "SELECT count(v) FROM bench"})
        status, body = request(f"{self.url}/query?{q}")
        series = json.loads(body)["results"][0].get("series")
        return series[0]["values"][0][1] if series else 0


def batches(points, batch):
    """Line protocol: 100 series, three fields, one point per series per timestamp."""
    base = 1_600_000_000_000_000_000
    for start in range(0, points, batch):
        lines = []
        for i in range(start, min(start + batch, points)):
            lines.append(
                f"bench,host=h{i % 100},region=r{i % 5} v={i},load={i % 97}.5,up=true {base + (i // 100) * 1_000_000_000}")
        yield ("\n".join(lines) + "\n").encode()


def write_all(url, db, points, batch):
    start = time.perf_counter()
    for body in batches(points, batch):
        status, answer = request(f"{url}/write?db={db}", data=body, method="POST")
        if status != 204:
            sys.exit(f"write to {url} answered {status}: {answer[:200]!r}")
    return time.perf_counter() - start


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--limit", type=float, default=600, help="seconds the replay may take")
    parser.add_argument("--outages", type=int, default=6,
                        help="outages in a row, to see whether the queue reuses its disk space")
    args = parser.parse_args()
    if not os.path.exists(GATEWAY):
        sys.exit("build first: cargo build --release")
    if not shutil.which("influxd"):
        sys.exit("influxd not found: apt-get install influxdb influxdb-client")

    root = tempfile.mkdtemp(prefix="replay-bench-")
    gateway = None
    a = b = None
    try:
        a, b = Influxd(root, "a"), Influxd(root, "b")
        for node in (a, b):
            for db in ("direct", "replayed"):
                request(f"{node.url}/query", data=f"q=CREATE DATABASE {db}".encode(), method="POST")

        direct_s = write_all(b.url, "direct", args.points, args.batch)

        port = free_port()
        data_dir = os.path.join(root, "gateway")
        config = os.path.join(root, "gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""listen: "127.0.0.1:{port}"
data_dir: "{data_dir}"
nodes:
  - name: a
    url: "{a.url}"
  - name: b
    url: "{b.url}"
health:
  interval: 1s
retry:
  initial_backoff: 100ms
  max_backoff: 1s
repair:
  auto: false                 # the baseline wrote to b behind the gateway's back
""")
        log = open(os.path.join(root, "gateway.log"), "w")
        gateway = subprocess.Popen([GATEWAY, "--config", config], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        gw = f"http://127.0.0.1:{port}"
        wait_ping(gw)

        disk = []  # (before, after) the drain, per outage
        for outage in range(args.outages):
            b.kill()
            time.sleep(1.5)  # let a probe mark it down, as in a real outage
            took = write_all(gw, "replayed", args.points, args.batch)
            if outage == 0:
                queued_s = took
                queue_bytes = json.loads(request(f"{gw}/health")[1])["nodes"][1]["queue"]["bytes"]
            before = du(os.path.join(data_dir, "queue"))

            b.start()
            start = time.perf_counter()
            deadline = start + args.limit
            while time.perf_counter() < deadline:
                health = json.loads(request(f"{gw}/health")[1])
                if health["nodes"][1]["queue"]["entries"] == 0:
                    break
                time.sleep(0.02)
            else:
                sys.exit(f"replay did not finish within {args.limit}s")
            if outage == 0:
                replay_s = time.perf_counter() - start
            # The same points each time: a node holds them once.
            held = b.count("replayed")
            if held != args.points:
                sys.exit(f"b holds {held} points after the replay, expected {args.points}")
            time.sleep(2)  # sled reclaims space in the background
            disk.append((before, du(os.path.join(data_dir, "queue"))))

        direct = args.points / direct_s
        replay = args.points / replay_s
        print(f"points: {args.points} in batches of {args.batch}")
        print(f"write straight to influxd:          {direct:12,.0f} points/s ({direct_s:.2f} s)")
        print(f"write via gateway, replica down:    {args.points / queued_s:12,.0f} points/s ({queued_s:.2f} s)")
        print(f"replay of the backlog into influxd: {replay:12,.0f} points/s ({replay_s:.2f} s)")
        print(f"replay / direct ratio:              {replay / direct:12.2f}")
        print(f"queue payload before replay:        {queue_bytes / 2**20:12.1f} MiB")
        for outage, (before, after) in enumerate(disk, 1):
            print(f"queue on disk, outage {outage}, before / after drain: "
                  f"{before / 2**20:8.1f} MiB / {after / 2**20:.1f} MiB")
    finally:
        if gateway:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(timeout=30)
            except subprocess.TimeoutExpired:
                gateway.kill()
        for node in (a, b):
            if node:
                node.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
