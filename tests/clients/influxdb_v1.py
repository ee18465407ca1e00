"""Drives the `influxdb` PyPI package (the 1.x client) against HOST PORT DB, unchanged.

Prints one JSON object on stdout for the Rust test (tests/clients.rs) to compare; any client error
is an exception and a non-zero exit.
"""

import json
import sys
from datetime import datetime, timezone

from influxdb import InfluxDBClient


def main():
    host, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = InfluxDBClient(host=host, port=port, database=db, timeout=30)
    client.create_database(db)

    # Integer times are sent as given, so they must already be in the batch's precision; string
    # and datetime times are converted by the client, which is the other path worth covering.
    seconds = [
        {
            "measurement": "cpu",
            "tags": {"host": "server01", "region": "eu-west"},
            "time": 1700000000,
            "fields": {"usage": 0.64, "cores": 4, "note": 'hello, "world"', "ok": True},
        },
        {
            "measurement": "cpu",
            "tags": {"host": "server02", "region": "us east"},
            "time": "2023-11-14T22:13:21Z",
            "fields": {"usage": 0.5},
        },
    ]
    millis = [
        {
            "measurement": "cpu",
            "tags": {"host": "server01", "region": "eu-west"},
            "time": 1700000002250,
            "fields": {"usage": 0.75, "cores": 4},
        },
        {
            "measurement": "cpu",
            "tags": {"host": "server,03", "region": "ap=south"},
            "time": datetime(2023, 11, 14, 22, 13, 23, 500000, tzinfo=timezone.utc),
            "fields": {"usage": 1.25, "ok": False},
        },
    ]
    scratch = [
        {"measurement": "scratch", "tags": {"kind": "tmp"}, "time": 1700000000, "fields": {"value": 1}},
    ]
    for points, precision in ((seconds, "s"), (millis, "ms"), (scratch, "s")):
        if not client.write_points(points, time_precision=precision):
            raise SystemExit(f"write_points with time_precision={precision} returned False")

    result = client.query("SELECT * FROM cpu", epoch="ms")
    before = client.get_list_measurements()
    client.drop_measurement("scratch")
    after = client.get_list_measurements()
    print(
        json.dumps(
            {
                "points": list(result.get_points()),
                "measurements_before": before,
                "measurements_after": after,
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
