#!/usr/bin/env python3
"""Instructions one write request costs the gateway in user space, beside the floors of its stack
and of its shape (examples/forward_floor.rs): a figure that does not swing with the machine's
load, where the null-sink rates of bench/run.py swing by a third on a busy host.

    cargo build --release --bins --examples && python3 bench/instr_count.py [WORD ...]

(with WORDs, only the settings whose names hold one of them: `gateway`, `floor`, `shards`...)

Each program runs under valgrind's callgrind in front of nginx null sinks, as in
bench/alloc_count.py, with counting off until it answers /ping: start-up is not counted, nor the
spinning of a thread that waits for another's lazy start-up, which valgrind (running one thread at
a time) stretches as long as its scheduler pleases. Then FEW writes of the same 5,000-point body,
one at a time, and in a second run MANY: the difference of the two totals over MANY - FEW writes
is what a request costs, shutdown and the first writes' warm-up cancelling out.

Only user-space instructions are counted: not the kernel's copies into the sockets, nor thread
switches. A copy of n bytes counts about n instructions (valgrind counts each step of glibc's
`rep movsb`: two more copies of the 348 KB body counted 0.75 M more), whatever it costs in time. So this complements bench/run.py's rates rather than
replacing them: it shows what the gateway's own code adds to the floor's, exactly, from one run to
the next. Needs valgrind and nginx (Debian: valgrind nginx-light).
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alloc_count import SHARDS, per_write, under_valgrind  # noqa: E402

GATEWAYS = [
    ("1 node", 1, ""),
    ("3 replicas", 3, ""),
    ("measurement shards, 3 nodes", 3, SHARDS),
    ("tag shards (host), 3 nodes", 3,
     SHARDS + "routes:\n  - {measurement_regex: \".\", by_tag: host}\n"),
]

FLOORS = [
    ("to 1", [], 1),
    ("to 3", [], 3),
    ("cut in 3", ["--split"], 3),
    ("to 3, node threads", ["--threads"], 3),
    ("cut in 3, node threads", ["--split", "--threads"], 3),
    ("to 3, HTTP workers", ["--on-workers"], 3),
    ("cut in 3, HTTP workers", ["--split", "--on-workers"], 3),
]


def total_instructions(root, name, command, writes, payload):
    """Starts `command(directory, port)` under callgrind, counting nothing until it answers
    /ping; sends `writes` writes and stops it: the instructions all its threads executed since."""
    directory = os.path.join(root, f"{name}-{writes}".replace(" ", "-").replace(",", ""))
    os.makedirs(directory)
    log = os.path.join(directory, "callgrind.log")

    def count_from_now(pid):
        subprocess.run(["callgrind_control", "--instr=on", str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    under_valgrind(["--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
                    f"--log-file={log}"], directory, name, command, writes, payload,
                   ready=count_from_now)
    with open(log) as f:
        found = re.search(r"Collected : (\d+)", f.read())
    if not found:
        sys.exit(f"{name}: callgrind printed no total (see {log})")
    return int(found.group(1))


def main():
    print(f"{'setting':<42} {'instructions a write':>20} {'a point':>9}", flush=True)
    for name, instructions in per_write("gateway-instructions-", GATEWAYS, FLOORS,
                                        total_instructions, only=sys.argv[1:]):
        print(f"{name:<42} {instructions:>20,.0f} {instructions / 5_000:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
