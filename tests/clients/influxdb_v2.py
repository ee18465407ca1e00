"""Drives the `influxdb-client` PyPI package (the 2.x client) against HOST PORT DB, unchanged.

Writes through `/api/v2/write` the way InfluxDB 1.8 documents for 2.x clients: bucket `DB/autogen`,
org `-`, token `user:password`. Prints one JSON line for the Rust test (tests/clients.rs).
"""

import json
import sys
from datetime import datetime, timezone

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS


def main():
    host, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    bucket = f"{db}/autogen"
    with InfluxDBClient(url=f"http://{host}:{port}", token="user:password", org="-", timeout=30_000) as client:
        # SYNCHRONOUS raises on any non-2xx answer; the batching default would only log it.
        write_api = client.write_api(write_options=SYNCHRONOUS)
        write_api.write(
            bucket=bucket,
            org="-",
            write_precision=WritePrecision.S,
            record=[
                Point("room").tag("floor", "1").field("temp", 21.5).field("people", 3)
                .time(1700000000, WritePrecision.S),
                Point("room").tag("floor", "2").field("temp", 19.75)
                .time(datetime(2023, 11, 14, 22, 13, 21, tzinfo=timezone.utc), WritePrecision.S),
            ],
        )
        write_api.write(
            bucket=bucket,
            org="-",
            write_precision=WritePrecision.NS,
            record=[
                "room,floor=1 temp=22.25 1700000002123456789",
                Point("room").tag("floor", "2").field("temp", 19.5).field("door", "open")
                .time(1700000003000000001, WritePrecision.NS),
            ],
        )
        # /health in InfluxDB's own shape: the client's model requires name and status.
        health = client.health()
        checks = sorted(check.name for check in (health.checks or []))
    print(json.dumps({"written": 4, "health": [health.name, health.status, checks]}))


if __name__ == "__main__":
    main()
