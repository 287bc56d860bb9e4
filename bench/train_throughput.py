"""Training cost of one update: examples per second of the tower stage and wall time of each stage of `train()`.

Simulates a small world, then runs `train()` from scratch on all but the last day and reads what it logged (per-step
samples/s, tower and ranker seconds). The old design (encoder fine-tuning on tokenized text) measured ~6-9 examples/s
on this kind of 2-core machine (docs/benchmarks.md, earlier section); the target is >= 200x that.
Usage: .venv/bin/python bench/train_throughput.py [--days 4 --users 600 --steps 300 --threads 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from pathlib import Path

import torch

from liveloop.config import Config, SimulateConfig
from liveloop.data.simulator import simulate
from liveloop.training import train
from liveloop.training.loop import LOG_FILE
from liveloop.workspace import Workspace


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="liveloop-throughput-") as tmp:
        root = Path(tmp)
        cfg = Config(seed=args.seed)
        cfg.paths.root, cfg.paths.state = root, Path.cwd() / ".liveloop"  # the shared text-vector cache
        cfg.simulate = SimulateConfig(days=args.days, n_users=args.users)
        cfg.train = cfg.train.model_copy(update={"steps": args.steps, "batch_size": args.batch})
        ws = Workspace.from_config(cfg)
        batches = simulate(cfg.simulate, cfg.seed, ws.accepted, ws.simulator_truth)
        result = train(cfg, ws, batches[:-1], "scratch", root / "model")
        state = json.loads((root / "model" / "state.json").read_text())["metrics"]
        with (root / "model" / LOG_FILE).open() as fh:
            speeds = [float(r["samples_per_s"]) for r in csv.DictReader(fh)][1:]
    out = {"steps": args.steps, "batch": args.batch, "threads": torch.get_num_threads(),
           "median_examples_per_s": statistics.median(speeds) if speeds else None,
           "tower_seconds": state["tower_seconds"], "ranker_seconds": state["ranker_seconds"],
           "wall_seconds": round(result.wall_seconds, 1), "examples": state["examples"]}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
