"""Training throughput: liveloop's `train()` against a bare torch loop on the same model and batch, in one run.

The bare loop is the floor of what this model costs: pre-tokenized fixed tensors, forward, in-batch softmax, backward,
AdamW step. `train()` adds sampling, tokenization, repeat features, logQ, clipping, logging. Both retrieval-only
(ctr off) so they do the same work. Reports per-step medians (first step dropped as warm-up) and the ratio.
Usage: .venv/bin/python bench/train_throughput.py [--steps 12 --batch 32 --freeze 4 --bf16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from liveloop.config import Config, SimulateConfig
from liveloop.data.simulator import simulate
from liveloop.model.recommender import Recommender
from liveloop.training import train
from liveloop.training.examples import build_training_data
from liveloop.training.loop import LOG_FILE, freeze_lower_layers
from liveloop.training.losses import sampled_softmax_loss
from liveloop.workspace import Workspace


def bare_loop(cfg: Config, rows: pd.DataFrame, steps: int) -> list[float]:
    """Seconds per step of the plainest loop over one fixed batch."""
    torch.manual_seed(cfg.seed)
    rec = Recommender.from_config(cfg.model, "cpu")
    freeze_lower_layers(rec.net, cfg.train.freeze_layers)
    params = [p for p in rec.net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr)
    users, items = rec.tokenize(rows["user_text"].tolist()), rec.tokenize(rows["item_text"].tolist())
    codes, weights = torch.arange(len(rows)), torch.ones(len(rows))
    rec.net.train()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.bf16):
            u, v = rec.net(users, items)
            loss = sampled_softmax_loss(u @ v.T / rec.net.temperature, codes, weights, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per loop")
    parser.add_argument("--batch", type=int, default=32, help="retrieval batch size")
    parser.add_argument("--freeze", type=int, default=4, help="train.freeze_layers")
    parser.add_argument("--max-length", type=int, default=48, help="model.max_length")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = Config.model_validate(
            {
                "paths": {"root": str(root), "state": str(root / ".liveloop")},
                "model": {"max_length": args.max_length},
                "train": {"steps": args.steps, "batch_size": args.batch, "ctr_batch_size": 0, "freeze_layers": args.freeze,
                          "bf16": args.bf16, "replay_ratio": 0.0, "checkpoint_every": 10_000, "device": "cpu"},
            }
        )
        ws = Workspace.from_config(cfg)
        batches = simulate(SimulateConfig(days=1, n_users=300, n_items=200), cfg.seed, ws.accepted, ws.simulator_truth)
        examples = build_training_data(batches, ws.accepted, cfg.model, cfg.train, cfg.seed).examples
        fixed = examples.sample(args.batch, random_state=cfg.seed)
        # bare loop before and after train(), so drifting load on a shared machine hits both sides alike
        bare = bare_loop(cfg, fixed, args.steps // 2 + 1)[1:]
        result = train(cfg, ws, batches, "scratch", root / "model")
        bare += bare_loop(cfg, fixed, args.steps // 2 + 1)[1:]
        ours = [args.batch / s for s in pd.read_csv(result.model_dir / LOG_FILE)["samples_per_s"]][1:]

    bare_sps, ours_sps = args.batch / statistics.median(bare), args.batch / statistics.median(ours)
    print(json.dumps({
        "batch": args.batch, "max_length": args.max_length, "freeze_layers": args.freeze, "bf16": args.bf16,
        "steps_timed": [len(bare), len(ours)], "bare_median_step_s": round(statistics.median(bare), 4),
        "train_median_step_s": round(statistics.median(ours), 4), "bare_samples_per_s": round(bare_sps, 2),
        "train_samples_per_s": round(ours_sps, 2), "ratio": round(ours_sps / bare_sps, 3),
        "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
