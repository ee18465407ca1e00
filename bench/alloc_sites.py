#!/usr/bin/env python3
"""Where the heap allocations of a write come from: bench/alloc_count.py's count, itemised by
allocation site, so that what grows with the replicas can be named.

    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --bins \\
        && python3 bench/alloc_sites.py [1 3 ...]

Each argument is a number of nodes the gateway replicates to (default: 1 and 3). The gateway runs
under valgrind's dhat in front of nginx null sinks, with FEW and then MANY writes of the benchmark's
5,000-point body; each site's difference over MANY - FEW writes is what a write costs there. A
site is the innermost frame that is not allocation plumbing (the allocator, `alloc`, `core`,
`std`, `bytes`' growth), beside the innermost frame of the gateway's own code. The release build
needs line tables for the frames to have names. Needs valgrind and nginx (Debian: valgrind
nginx-light).
"""

import collections
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alloc_count import body, gateway, under_valgrind  # noqa: E402
from run import GATEWAY, Nginx  # noqa: E402

FEW, MANY = 10, 40
SHOWN = 40

PLUMBING = re.compile(r"(alloc::|core::|std::|__rust|malloc|realloc|calloc|memalign|hashbrown::|"
                      r"<alloc|<core|<std|<T as|<&|<\[|<str|bytes::bytes_mut::|<bytes::bytes_mut|"
                      r"vg_replace|\?\?\?)")


def profile(root, name, command, writes, payload):
    """dhat's profile of `command(directory, port)` after `writes` writes."""
    directory = os.path.join(root, f"{name}-{writes}")
    os.makedirs(directory)
    out = os.path.join(directory, "dhat.json")
    under_valgrind(["--tool=dhat", f"--dhat-out-file={out}"], directory, name, command, writes,
                   payload)
    with open(out) as f:
        return json.load(f)


def frame_name(frame):
    name = re.sub(r"^0x[0-9A-Fa-f]+: ", "", frame)
    return re.sub(r" \(.*\)$", "", name)


def sites(data):
    """Allocations per (site, the gateway's own innermost frame)."""
    counts = collections.Counter()
    for point in data["pps"]:
        frames = [frame_name(data["ftbl"][i]) for i in point["fs"]]
        site = next((f for f in frames if not PLUMBING.match(f)), "?")
        own = next((f for f in frames if "influx_gateway" in f), "-")
        counts[(site[:80], own[:80])] += point["tbk"]
    return counts


def main():
    for program in ("valgrind", "nginx"):
        if not shutil.which(program):
            sys.exit(f"{program} not found: apt-get install valgrind nginx-light")
    if not os.path.exists(GATEWAY):
        sys.exit("build first (with line tables, see the docstring)")
    replicas = [int(n) for n in sys.argv[1:]] or [1, 3]
    root = tempfile.mkdtemp(prefix="gateway-alloc-sites-")
    nginx = Nginx(root)
    try:
        sinks = [f"http://127.0.0.1:{port}" for port in nginx.sinks]
        if max(replicas) > len(sinks):
            sys.exit(f"at most {len(sinks)} nodes")
        payload = body()
        per_write = {}
        for n in replicas:
            def command(directory, port, n=n):
                return gateway(directory, port, sinks[:n], "")
            few = sites(profile(root, f"gateway-{n}", command, FEW, payload))
            many = sites(profile(root, f"gateway-{n}", command, MANY, payload))
            per_write[n] = {k: (many[k] - few.get(k, 0)) / (MANY - FEW) for k in many}
            print(f"{n} node(s): {sum(per_write[n].values()):.1f} allocations a write", flush=True)
        keys = set().union(*per_write.values())
        ranked = sorted(keys, key=lambda k: -max(abs(w.get(k, 0)) for w in per_write.values()))
        print(" ".join(f"{n:>6}" for n in replicas), "| site | the gateway's frame")
        for key in ranked[:SHOWN]:
            values = [per_write[n].get(key, 0) for n in replicas]
            if max(abs(v) for v in values) >= 0.5:
                print(" ".join(f"{v:6.1f}" for v in values), "|", key[0], "|", key[1])
    finally:
        nginx.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
