#!/usr/bin/env python3
"""The benchmark harness: the gateway side by side with a real influxd and with nginx, every ratio
measured in this one run on this one machine.

    cargo build --release --bins --examples && python3 bench/run.py [--duration 10] [--quick]

Needs influxd (Debian: influxdb), wrk and nginx (Debian: wrk, nginx-light) and valgrind. Load is
wrk over 8 connections posting realistic batches (5,000 points, 100 series in 10 measurements,
three fields, timestamps varying per request) for --duration seconds; everything runs on
127.0.0.1 with temporary directories, and every loop is bounded in time.

1. write throughput, points/s: through the gateway to one influxd vs straight to it (also with
   three replicas, and with gzip bodies);
2. the gateway's own ceiling: through the gateway to a null sink (nginx `return 204`) vs nginx
   `proxy_pass` to the same sink, with measurement sharding over three sinks, tag sharding (by
   `host`) over three sinks and replicating to three; and, for scale, nginx itself replicating to three (`mirror`), and the floor of the
   gateway's own stack: actix-web and awc forwarding bodies unread (examples/forward_floor.rs),
   from the thread that received them; from one thread per upstream, as the gateway's node
   actors send (the floor of the gateway's shape); and from the HTTP workers' own threads (the
   floor of a gateway whose node actors lived there);
3. small-query latency: p50/p99 of `SELECT last(v) FROM m0` straight vs through the gateway;
4. replay after an outage (bench/replay_rate.py): a backlog drained into a returning influxd vs
   writing the same points straight, and the queue's disk use after the drain;
5. peak RSS of the gateway under 8 connections with one of three nodes down;
6. instructions per point of routing (valgrind --tool=callgrind) in each routing mode;
7. CPU per write of the gateway, influxd and the floor (from /proc), and how many of the
   machine's cores were busy: what the two cores bound, and an estimate for eight.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replay_rate  # noqa: E402  (shares the influxd and HTTP helpers)
from replay_rate import Influxd, free_port, request, wait_ping  # noqa: E402

ROOT = replay_rate.ROOT
GATEWAY = replay_rate.GATEWAY
ROUTE_COST = os.path.join(ROOT, "target", "release", "examples", "route_cost")
FORWARD_FLOOR = os.path.join(ROOT, "target", "release", "examples", "forward_floor")
POINTS_PER_BATCH = 5_000
BODIES = 40
CONNECTIONS = 8

# Each wrk thread has a Lua state of its own: without an offset both would send body 1, body 2, ...
# in lockstep, two clients writing the very same points at the same instant, which no real fleet
# does (and which the gateway must send one after the other to keep the order of overwrites).
WRITE_LUA = r"""
local bodies = {}
local n = 0
local path = nil
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
init = function(args)
  path = args[1]
  local dir, count = args[2], tonumber(args[3])
  for k = 1, count do
    local f = assert(io.open(dir .. "/body" .. k, "rb"))
    bodies[k] = f:read("*a")
    f:close()
  end
  n = ((id or 0) * math.floor(count / 2)) % count
  if args[4] == "gzip" then wrk.headers["Content-Encoding"] = "gzip" end
  wrk.headers["Content-Type"] = "text/plain"
end
request = function()
  n = n % #bodies + 1
  return wrk.format("POST", path, nil, bodies[n])
end
"""

QUERY_LUA = r"""
init = function(args) path = args[1] end
request = function() return wrk.format("GET", path) end
"""


def write_bodies(directory, compress):
    """BODIES batches of 5,000 points: 100 series over 10 measurements, three fields, and
    timestamps that differ from one body to the next so that influxd keeps doing real work."""
    os.makedirs(directory, exist_ok=True)
    base = 1_700_000_000_000_000_000
    for k in range(BODIES):
        lines = []
        for i in range(POINTS_PER_BATCH):
            series = i % 100
            t = base + (k * POINTS_PER_BATCH + i) // 100 * 1_000_000_000
            lines.append(f"m{series % 10},host=h{series:03},region=r{series % 5} "
                         f"v={i}.5,count={i % 97}i,ok=true {t}")
        body = ("\n".join(lines) + "\n").encode()
        with open(os.path.join(directory, f"body{k + 1}"), "wb") as f:
            f.write(gzip.compress(body, 6) if compress else body)
    return directory


def wrk(url, path, script, args, duration, connections=CONNECTIONS, threads=2, latency=False):
    """Runs wrk; returns (requests/s, {percentile: ms}, non-2xx count)."""
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
               "--timeout", "30s", "-s", script]
    if latency:
        command.append("--latency")
    command += [url, "--", path] + args
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rate:
        sys.exit(f"wrk printed no rate:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    percentiles = {}
    for p, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        percentiles[int(p)] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return float(rate.group(1)), percentiles, int(bad.group(1)) if bad else 0


class Gateway:
    def __init__(self, root, name, nodes, extra=""):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        yaml = f'listen: "127.0.0.1:{self.port}"\ndata_dir: "{self.dir}/data"\nnodes:\n'
        for node_name, url in nodes:
            yaml += f'  - name: {node_name}\n    url: "{url}"\n'
        # The baselines write straight to the nodes, behind the gateways' backs: with repair.auto
        # a gateway would find its nodes different and repair them during the measurements.
        yaml += "health:\n  interval: 1s\n  timeout: 1s\nrepair:\n  auto: false\n" + extra
        config = os.path.join(self.dir, "config.yaml")
        with open(config, "w") as f:
            f.write(yaml)
        log = open(os.path.join(self.dir, "gateway.log"), "w")
        self.proc = subprocess.Popen([GATEWAY, "--config", config], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        wait_ping(self.url)

    def peak_rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Nginx:
    """A null sink that answers every request 204 like influxd's /write, a proxy_pass to it, and a
    proxy_pass that also mirrors every request to two more sinks (nginx replicating to three)."""

    def __init__(self, root):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(self.dir)
        self.sinks = [free_port() for _ in range(3)]
        self.proxy = free_port()
        self.mirror = free_port()
        sinks = "".join(f"""
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 64m;
    location / {{
      add_header X-Influxdb-Version "1.6.7-sink" always;
      return 204;
    }}
  }}""" for port in self.sinks)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(f"""daemon off;
worker_processes 2;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  client_body_buffer_size 1m;
  upstream sink {{ server 127.0.0.1:{self.sinks[0]}; keepalive 32; }}
  upstream sink2 {{ server 127.0.0.1:{self.sinks[1]}; keepalive 32; }}
  upstream sink3 {{ server 127.0.0.1:{self.sinks[2]}; keepalive 32; }}{sinks}
  server {{
    listen 127.0.0.1:{self.proxy};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering on;
    }}
  }}
  server {{
    listen 127.0.0.1:{self.mirror};
    client_max_body_size 64m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location / {{
      # nginx finishes a request, and reads the connection's next one, only once both mirrors
      # have answered too.
      mirror /copy2;
      mirror /copy3;
      proxy_pass http://sink;
    }}
    location = /copy2 {{ internal; proxy_pass http://sink2$request_uri; }}
    location = /copy3 {{ internal; proxy_pass http://sink3$request_uri; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(self.dir, "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ping(f"http://127.0.0.1:{self.sinks[0]}")
        wait_ping(f"http://127.0.0.1:{self.proxy}")
        wait_ping(f"http://127.0.0.1:{self.mirror}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Floor:
    """examples/forward_floor: actix-web and awc, the gateway's HTTP server and client, forwarding
    each body unread to every upstream and answering 204 once all of them did; with `split`, one
    contiguous part of the body to each, cut at newlines (sharding whose choice costs nothing);
    with `threads`, each upstream's copies sent from a thread of its own, as the gateway's node
    actors send theirs (the floor of the gateway's shape); with `on_workers`, from one of the HTTP
    workers' threads instead (the floor of a gateway whose node actors lived there)."""

    def __init__(self, upstreams, split=False, threads=False, on_workers=False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        flags = ((["--split"] if split else []) + (["--threads"] if threads else [])
                 + (["--on-workers"] if on_workers else []))
        self.proc = subprocess.Popen([FORWARD_FLOOR, *flags, f"127.0.0.1:{self.port}", *upstreams],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        wait_ping(self.url)

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """The user and system CPU time process `pid` (all its threads) has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # After the command's closing parenthesis, utime and stime are the 12th and 13th fields.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks():
    """(busy, all) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU a measurement costs: of each watched process per request, and of the machine in all
    (how many of its cores were busy), to tell what the two cores bound."""

    def __init__(self):
        self.rows = []

    def measure(self, what, run, watched):
        """Runs `run()` (returns points/s over `seconds`), watching `watched`: {label: pid}."""
        before = {label: cpu_seconds(pid) for label, pid in watched.items()}
        busy0, all0 = machine_ticks()
        started = time.monotonic()
        rate = run()
        seconds = time.monotonic() - started
        busy1, all1 = machine_ticks()
        requests = rate / POINTS_PER_BATCH * seconds
        per_request = {label: (cpu_seconds(pid) - before[label]) / requests * 1000
                       for label, pid in watched.items()}
        cores = os.cpu_count() * (busy1 - busy0) / max(all1 - all0, 1)
        self.rows.append((what, rate, per_request, cores))
        return rate

    def report(self):
        cores = os.cpu_count()
        print(f"\nCPU per 5,000-point write (ms), and what {cores} cores bound "
              f"(estimate for 8: the process alone on 8 cores, its CPU per write unchanged)",
              flush=True)
        for what, rate, per_request, busy in self.rows:
            parts = []
            for label, ms in per_request.items():
                alone = 8 / (ms / 1000) * POINTS_PER_BATCH if ms > 0 else float("nan")
                parts.append(f"{label} {ms:.3f} ms (8 cores: {alone / 1e6:.1f} M points/s)")
            print(f"  {what:<44} {rate:>12,.0f} points/s, {busy:.2f} of {cores} cores busy; "
                  + "; ".join(parts), flush=True)


def points_per_second(rate):
    return rate * POINTS_PER_BATCH


def create(url, db):
    status, body = request(f"{url}/query", data=f"q=CREATE DATABASE {db}".encode(), method="POST")
    if status != 200:
        sys.exit(f"CREATE DATABASE on {url}: {status} {body!r}")


def callgrind(mode):
    totals = []
    for iterations in (1, 11):
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              ROUTE_COST, mode, str(iterations)],
                             capture_output=True, text=True, timeout=600).stderr
        found = re.search(r"Collected : (\d+)", out)
        if not found:
            sys.exit(f"callgrind printed no total:\n{out}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (10 * POINTS_PER_BATCH)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    parser.add_argument("--rss-duration", type=int, default=60)
    parser.add_argument("--replay-points", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="3 s of load, 10 s for RSS, 200,000 replayed points")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rss_duration, args.replay_points = 3, 10, 200_000
    for program in ("influxd", "wrk", "nginx", "valgrind"):
        if not shutil.which(program):
            sys.exit(f"{program} not found: apt-get install influxdb wrk nginx-light valgrind")
    for binary in (GATEWAY, ROUTE_COST, FORWARD_FLOOR):
        if not os.path.exists(binary):
            sys.exit("build first: cargo build --release --bins --examples")

    root = tempfile.mkdtemp(prefix="gateway-bench-")
    running = []
    rows = []

    def row(what, direct, through, unit, goal=None):
        ratio = through / direct if direct else float("nan")
        rows.append((what, direct, through, unit, ratio, goal))
        verdict = "" if goal is None else ("  goal met" if ratio >= goal else f"  goal {goal} NOT met")
        print(f"{what:<58} {direct:>14,.0f} {through:>14,.0f} {unit:<9} {ratio:6.2f}{verdict}",
              flush=True)

    try:
        plain = write_bodies(os.path.join(root, "bodies"), compress=False)
        gzipped = write_bodies(os.path.join(root, "bodies-gz"), compress=True)
        script = os.path.join(root, "write.lua")
        with open(script, "w") as f:
            f.write(WRITE_LUA)
        query_script = os.path.join(root, "query.lua")
        with open(query_script, "w") as f:
            f.write(QUERY_LUA)
        print(f"{'measurement':<58} {'baseline':>14} {'gateway':>14} {'unit':<9} {'ratio':>6}")

        # 1. Write throughput against a real influxd.
        nodes = [Influxd(root, f"influx{i}") for i in range(1, 4)]
        running += nodes
        for node in nodes:
            for db in ("direct", "one", "serial", "three", "gzdirect", "gzone"):
                create(node.url, db)
        one = Gateway(root, "gw-one", [("influx1", nodes[0].url)])
        three = Gateway(root, "gw-three", [(f"influx{i}", n.url) for i, n in enumerate(nodes, 1)])
        # One request at a time to the node, for comparison with the default (4 at once, each
        # beside writes it commutes with).
        serial = Gateway(root, "gw-serial", [("influx1", nodes[0].url)],
                         "write:\n  max_in_flight: 1\n")
        running += [one, three, serial]

        def throughput(url, db, bodies, *extra):
            rate, _, bad = wrk(url, f"/write?db={db}", script, [bodies, str(BODIES), *extra],
                               args.duration)
            if bad:
                sys.exit(f"{bad} writes to {url} were not answered 204")
            return points_per_second(rate)

        # influxd slows down as it holds more and compacts what it was just sent, so whatever is
        # measured second would be handicapped: each pair is measured baseline, gateway, gateway,
        # baseline, and averaged.
        def paired(baseline, gateway):
            a1, b1, b2, a2 = baseline(), gateway(), gateway(), baseline()
            return (a1 + a2) / 2, (b1 + b2) / 2

        # A fresh influxd is fastest in its first seconds (730,000 points/s, then 680,000, then
        # 630,000 in one run), which the baseline's first sample alone would get: warm it up first.
        create(nodes[0].url, "warmup")
        throughput(nodes[0].url, "warmup", plain)
        cpu = CpuMeter()
        direct, through = paired(lambda: throughput(nodes[0].url, "direct", plain),
                                 lambda: throughput(one.url, "one", plain))
        cpu.measure("write straight to influxd", lambda: throughput(nodes[0].url, "direct", plain),
                    {"influxd": nodes[0].proc.pid})
        cpu.measure("write, 1 node, through the gateway", lambda: throughput(one.url, "one", plain),
                    {"gateway": one.proc.pid, "influxd": nodes[0].proc.pid})
        cpu.measure("write, 3 replicas, through the gateway",
                    lambda: throughput(three.url, "three", plain),
                    {"gateway": three.proc.pid, "each influxd": nodes[0].proc.pid})
        row("write, 1 node: gateway vs straight to influxd", direct, through, "points/s", 0.95)
        row("write, 1 node, write.max_in_flight: 1",
            *paired(lambda: throughput(nodes[0].url, "direct", plain),
                    lambda: throughput(serial.url, "serial", plain)), "points/s")
        row("write, 3 replicas: gateway vs straight to one influxd",
            *paired(lambda: throughput(nodes[0].url, "direct", plain),
                    lambda: throughput(three.url, "three", plain)), "points/s")
        row("write, gzip bodies, 1 node",
            *paired(lambda: throughput(nodes[0].url, "gzdirect", gzipped, "gzip"),
                    lambda: throughput(one.url, "gzone", gzipped, "gzip")), "points/s")

        # 3. Small-query latency added: the same query on the same database of the same node,
        # straight and through the gateway (whose only node it is), paired as above.
        path = "/query?db=direct&q=SELECT+last(v)+FROM+m0"

        def latency(url):
            return wrk(url, path, query_script, [], args.duration, 1, 1, True)[1]

        runs = [latency(nodes[0].url), latency(one.url), latency(one.url), latency(nodes[0].url)]
        straight = {p: (runs[0][p] + runs[3][p]) / 2 for p in (50, 99)}
        through = {p: (runs[1][p] + runs[2][p]) / 2 for p in (50, 99)}
        for p in (50, 99):
            added = through.get(p, float("nan")) - straight.get(p, float("nan"))
            print(f"{'query p' + str(p) + ' latency (ms), added: ' + format(added, '+.3f'):<58} "
                  f"{straight.get(p, float('nan')):>14.3f} {through.get(p, float('nan')):>14.3f} ms",
                  flush=True)
            rows.append((f"SELECT last(v) p{p} latency (added {added:+.3f} ms)",
                         straight.get(p), through.get(p), "ms", None, None))

        # 5. Peak RSS with one of three nodes down.
        nodes[2].kill()
        time.sleep(2)  # a probe marks it down, as in a real outage
        create(three.url, "rss")
        throughput(three.url, "rss", plain)  # warm-up is part of the peak on purpose
        rss_rate, _, _ = wrk(three.url, "/write?db=rss", script, [plain, str(BODIES)],
                             args.rss_duration)
        peak = three.peak_rss()
        print(f"{'peak RSS, 8 connections, 1 of 3 nodes down':<58} {'':>14} "
              f"{peak / 2**20:>14.1f} MiB       goal <= 128 MiB"
              f"{'  goal met' if peak <= 128 * 2**20 else '  NOT met'}", flush=True)
        rows.append((f"peak RSS, {args.rss_duration} s, 8 connections, 1 of 3 nodes down", None,
                     peak / 2**20, "MiB", None, None))
        for proc in (one, three, serial):
            proc.stop()
        for node in nodes:
            node.kill()
        running.clear()

        # 2. The gateway's own ceiling, against nginx, into a null sink; and, for scale, nginx
        # replicating itself, and actix-web with awc forwarding bodies unread (the floor of the
        # gateway's own HTTP stack, examples/forward_floor.rs).
        nginx = Nginx(root)
        running.append(nginx)
        sink = [f"http://127.0.0.1:{port}" for port in nginx.sinks]
        sharded = Gateway(root, "gw-sharded", [(f"s{i}", url) for i, url in enumerate(sink, 1)],
                          "shards:\n  - {name: a, replicas: [s1]}\n  - {name: b, replicas: [s2]}\n"
                          "  - {name: c, replicas: [s3]}\n")
        tagged = Gateway(root, "gw-tagged", [(f"s{i}", url) for i, url in enumerate(sink, 1)],
                         "shards:\n  - {name: a, replicas: [s1]}\n  - {name: b, replicas: [s2]}\n"
                         "  - {name: c, replicas: [s3]}\n"
                         "routes:\n  - {measurement_regex: \".\", by_tag: host}\n")
        replicated = Gateway(root, "gw-replicated",
                             [(f"s{i}", url) for i, url in enumerate(sink, 1)])
        floor_one, floor_three = Floor(sink[:1]), Floor(sink)
        floor_split = Floor(sink, split=True)
        floor_threads = Floor(sink, threads=True)
        split_threads = Floor(sink, split=True, threads=True)
        floor_workers = Floor(sink, on_workers=True)
        split_workers = Floor(sink, split=True, on_workers=True)
        running += [sharded, tagged, replicated, floor_one, floor_three, floor_split,
                    floor_threads, split_threads, floor_workers, split_workers]
        floors = (floor_three, floor_split, floor_threads, split_threads, floor_workers,
                  split_workers)
        targets = {
            "proxy": f"http://127.0.0.1:{nginx.proxy}",
            "mirror": f"http://127.0.0.1:{nginx.mirror}",
            "floor1": floor_one.url,
            "floor3": floor_three.url,
            "split3": floor_split.url,
            "threads3": floor_threads.url,
            "split3threads": split_threads.url,
            "workers3": floor_workers.url,
            "split3workers": split_workers.url,
            "sharded": sharded.url,
            "tagged": tagged.url,
            "replicated": replicated.url,
        }
        # The rates into a null sink swing by a fifth from one run to the next on this machine:
        # every target is measured twice, in one order and then in the reverse one, and averaged.
        order = list(targets)
        samples = {name: [] for name in order}
        # A first run warms up nginx and the sinks' connections, and is not counted: otherwise it
        # would land on the proxy, the baseline of every row.
        throughput(targets["proxy"], "x", plain)
        for name in order + order[::-1]:
            samples[name].append(throughput(targets[name], "x", plain))
        rate = {name: sum(values) / len(values) for name, values in samples.items()}
        for name, what, proc in (("replicated", "null sink, gateway, 3 replicas", replicated),
                                 ("sharded", "null sink, gateway, measurement shards", sharded),
                                 ("tagged", "null sink, gateway, tag shards", tagged),
                                 ("floor3", "null sink, floor to 3", floor_three),
                                 ("split3", "null sink, floor split in 3", floor_split),
                                 ("threads3", "null sink, floor to 3 through 3 threads",
                                  floor_threads),
                                 ("split3threads", "null sink, floor split in 3 through 3 threads",
                                  split_threads),
                                 ("workers3", "null sink, floor to 3 from the HTTP workers",
                                  floor_workers),
                                 ("split3workers", "null sink, floor split from the HTTP workers",
                                  split_workers)):
            cpu.measure(what, lambda n=name: throughput(targets[n], "x", plain),
                        {"gateway" if proc not in floors else "floor": proc.proc.pid})
        row("null sink, measurement shards: gateway vs nginx proxy", rate["proxy"],
            rate["sharded"], "points/s", 1.0)
        row("null sink, 3 replicas: gateway vs nginx proxy", rate["proxy"], rate["replicated"],
            "points/s", 0.6)
        row("null sink: nginx mirror to 3 vs nginx proxy", rate["proxy"], rate["mirror"],
            "points/s")
        row("null sink: actix-web+awc floor to 1 vs nginx proxy", rate["proxy"], rate["floor1"],
            "points/s")
        row("null sink: actix-web+awc floor to 3 vs nginx proxy", rate["proxy"], rate["floor3"],
            "points/s")
        row("null sink: floor split in 3 parts, 3 sinks vs proxy", rate["proxy"], rate["split3"],
            "points/s")
        row("null sink: floor to 3 through 3 threads vs floor to 3", rate["floor3"],
            rate["threads3"], "points/s")
        row("null sink: floor split through 3 threads vs floor split", rate["split3"],
            rate["split3threads"], "points/s")
        row("null sink: floor to 3 from the HTTP workers vs floor to 3", rate["floor3"],
            rate["workers3"], "points/s")
        row("null sink: floor split from the HTTP workers vs floor split", rate["split3"],
            rate["split3workers"], "points/s")
        row("null sink, measurement shards: gateway vs floor split", rate["split3"],
            rate["sharded"], "points/s", 0.85)
        row("null sink, 3 replicas: gateway vs floor to 3", rate["floor3"], rate["replicated"],
            "points/s", 0.95)
        row("null sink, 3 replicas: gateway vs floor, 3 threads", rate["threads3"],
            rate["replicated"], "points/s")
        row("null sink, measurement shards: gateway vs split, 3 threads",
            rate["split3threads"], rate["sharded"], "points/s")
        row("null sink, tag shards: gateway vs split, 3 threads", rate["split3threads"],
            rate["tagged"], "points/s")
        row("null sink, tag shards: gateway vs floor split", rate["split3"], rate["tagged"],
            "points/s", 0.7)
        for proc in running:
            proc.stop()
        running.clear()

        # 6. Instructions per point, repeatable on a noisy machine.
        for mode in ("replication", "measurement", "tag"):
            cost = callgrind(mode)
            print(f"{'routing, ' + mode + ' (instructions/point)':<58} {'':>14} {cost:>14,.0f}",
                  flush=True)
            rows.append((f"routing cost, {mode}", None, cost, "instructions/point", None, None))
    finally:
        for proc in running:
            try:
                proc.stop() if hasattr(proc, "stop") else proc.kill()
            except Exception:  # noqa: BLE001  (best effort while tearing down)
                pass
        shutil.rmtree(root, ignore_errors=True)

    cpu.report()

    # 4. Replay after an outage: its own script, its own processes.
    print(flush=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "replay_rate.py"),
                    "--points", str(args.replay_points)], check=True, timeout=1800)


if __name__ == "__main__":
    main()
