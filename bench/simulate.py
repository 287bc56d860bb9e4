"""Benchmark the simulator at the issue's scale target: wall time and peak RSS of one `simulate` run.

Runs in this process (its peak RSS includes the interpreter, numpy, pandas and pyarrow) and prints one JSON line.
Usage: .venv/bin/python bench/simulate.py [--users 10000 --items 2000 --days 30 --rooms 60 --hosts 80]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from liveloop.config import SimulateConfig
from liveloop.data.batches import read_batch
from liveloop.data.simulator import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="n_users")
    parser.add_argument("--items", type=int, default=2_000, help="n_items (base catalog)")
    parser.add_argument("--days", type=int, default=30, help="simulated days")
    parser.add_argument("--rooms", type=int, default=60, help="rooms_per_day (scaled with the user count)")
    parser.add_argument("--hosts", type=int, default=80, help="n_hosts")
    parser.add_argument("--items-per-room", type=int, default=40, help="items_per_room")
    parser.add_argument("--scenario", default="seasonal-shift", help="scenario (a drift one exercises both phases)")
    parser.add_argument("--seed", type=int, default=7, help="seed")
    args = parser.parse_args()
    cfg = SimulateConfig(days=args.days, n_users=args.users, n_items=args.items, rooms_per_day=args.rooms,
                         n_hosts=args.hosts, items_per_room=args.items_per_room, scenario=args.scenario)
    with tempfile.TemporaryDirectory(prefix="liveloop-bench-sim-") as tmp:
        started = time.perf_counter()
        dirs = simulate(cfg, args.seed, Path(tmp) / "incoming", Path(tmp) / "truth")
        seconds = time.perf_counter() - started
        events = sum(len(read_batch(d)["events"]) for d in dirs)
        disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({
        "users": args.users, "items": args.items, "days": args.days, "rooms_per_day": args.rooms,
        "scenario": args.scenario, "events": events, "seconds": round(seconds, 2),
        "events_per_second": round(events / seconds), "peak_rss_mb": round(peak_mb), "disk_mb": round(disk / 2**20, 1),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
