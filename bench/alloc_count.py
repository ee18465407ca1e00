#!/usr/bin/env python3
"""Heap allocations one write request costs the gateway, by how many nodes it goes to, beside
the floor of its stack (examples/forward_floor.rs: actix-web and awc forwarding the body unread).

    cargo build --release --bins --examples && python3 bench/alloc_count.py

Each program runs under valgrind's memcheck, which counts every allocation ("total heap usage"),
in front of nginx null sinks (`return 204`, as bench/run.py's). Each setting is run twice, with
FEW and with MANY writes of the same 5,000-point body (100 series in 10 measurements), and stopped
with SIGTERM: the difference of the two totals over MANY - FEW writes is what a request costs,
start-up and shutdown cancelling out. The gateway's health probes are an hour apart, so that none
falls in the count. Needs valgrind and nginx (Debian: valgrind nginx-light).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replay_rate import free_port, request, wait_ping  # noqa: E402
from run import FORWARD_FLOOR, GATEWAY, Nginx  # noqa: E402

FEW, MANY = 10, 60

# Three shards of one node each, as bench/run.py's sharded gateways.
SHARDS = ("shards:\n  - {name: a, replicas: [s1]}\n  - {name: b, replicas: [s2]}\n"
          "  - {name: c, replicas: [s3]}\n")

# (name, nodes, YAML added to the gateway's configuration)
GATEWAYS = [
    ("1 node", 1, ""),
    ("3 replicas", 3, ""),
    ("measurement shards, 3 nodes", 3, SHARDS),
]

# (name, forward_floor's flags, upstreams)
FLOORS = [
    ("to 1", [], 1),
    ("to 3", [], 3),
    ("split in 3", ["--split"], 3),
]


def body():
    """One batch as bench/run.py writes them: 5,000 points, 100 series in 10 measurements."""
    lines = [f"m{i % 100 % 10},host=h{i % 100:03},region=r{i % 5} v={i}.5,count={i % 97}i,ok=true "
             f"{1_700_000_000_000_000_000 + i // 100 * 1_000_000_000}" for i in range(5_000)]
    return ("\n".join(lines) + "\n").encode()


def gateway(directory, port, sinks, extra):
    """The gateway's command line, its configuration written in `directory`."""
    yaml = f'listen: "127.0.0.1:{port}"\ndata_dir: "{directory}/data"\nnodes:\n'
    for i, url in enumerate(sinks, 1):
        yaml += f'  - name: s{i}\n    url: "{url}"\n'
    yaml += "health:\n  interval: 1h\nrepair:\n  auto: false\n" + extra
    config = os.path.join(directory, "config.yaml")
    with open(config, "w") as f:
        f.write(yaml)
    return [GATEWAY, "--config", config]


def under_valgrind(tool, directory, name, command, writes, payload, ready=None):
    """Starts `command(directory, port)` under valgrind with `tool` (its options), calls
    `ready(pid)` once it answers /ping, sends `writes` writes of `payload`, and stops it with
    SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(["valgrind", *tool, *command(directory, port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ping(url, limit=600)  # dhat reading a line-tables build takes minutes to start
        if ready:
            ready(proc.pid)
        for _ in range(writes):
            status, answer = request(f"{url}/write?db=bench", data=payload, method="POST")
            if status != 204:
                sys.exit(f"{name}: a write answered {status}: {answer[:200]!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def total_allocations(root, name, command, writes, payload):
    """Starts `command(directory, port)` under memcheck, sends `writes` writes, stops it: its total
    allocations."""
    directory = os.path.join(root, f"{name}-{writes}".replace(" ", "-").replace(",", ""))
    os.makedirs(directory)
    log = os.path.join(directory, "valgrind.log")
    under_valgrind(["--tool=memcheck", "--leak-check=no", f"--log-file={log}"], directory, name,
                   command, writes, payload)
    with open(log) as f:
        found = re.search(r"total heap usage: ([\d,]+) allocs", f.read())
    if not found:
        sys.exit(f"{name}: valgrind printed no heap summary (see {log})")
    return int(found.group(1).replace(",", ""))


def per_write(prefix, gateways, floors, total, only=()):
    """Yields (setting, what one write costs) for each gateway setting and floor, those whose
    names hold a word of `only` if any: `total(root, name, command, writes, payload)` counts what
    a run of `writes` writes cost, and the cost of a write is the difference of a FEW and a MANY
    run over MANY - FEW. Checks what the count needs first; runs in front of nginx null sinks."""
    for program in ("valgrind", "nginx"):
        if not shutil.which(program):
            sys.exit(f"{program} not found: apt-get install valgrind nginx-light")
    if not (os.path.exists(GATEWAY) and os.path.exists(FORWARD_FLOOR)):
        sys.exit("build first: cargo build --release --bins --examples")
    root = tempfile.mkdtemp(prefix=prefix)
    nginx = Nginx(root)
    try:
        sinks = [f"http://127.0.0.1:{port}" for port in nginx.sinks]
        payload = body()
        settings = [(f"gateway, {name}", lambda d, p, n=nodes, e=extra: gateway(d, p, sinks[:n], e))
                    for name, nodes, extra in gateways]
        settings += [(f"floor, {name}", lambda d, p, f=flags, n=nodes:
                      [FORWARD_FLOOR, *f, f"127.0.0.1:{p}", *sinks[:n]])
                     for name, flags, nodes in floors]
        for name, command in settings:
            if only and not any(word in name for word in only):
                continue
            few = total(root, name, command, FEW, payload)
            many = total(root, name, command, MANY, payload)
            yield name, (many - few) / (MANY - FEW)
    finally:
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    print(f"{'setting':<40} {'allocations a write':>20}", flush=True)
    for name, allocations in per_write("gateway-allocs-", GATEWAYS, FLOORS, total_allocations):
        print(f"{name:<40} {allocations:>20,.1f}", flush=True)


if __name__ == "__main__":
    main()
