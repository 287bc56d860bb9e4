"""The training loop, nanoGPT style: one function that reads top to bottom.

init (resume > scratch | champion | path) -> data (new batches + replay) -> model/optimizer -> stage 1 step loop
(sample, tokenize, forward, two losses, backward, clip, step, log, checkpoint) -> stage 2 (heads + score weights on
cached encoder states, full softmax; liveloop.training.heads) -> final model dir -> replay update.
Budget is `train.steps` optimiser steps, never epochs. Under torchrun each rank samples its own rows; rank 0 alone
saves and logs.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from liveloop.config import Config, TrainConfig
from liveloop.model.recommender import STATE_FILE, WEIGHTS_FILE, ModelError, Recommender, TwoTower, repeat_features
from liveloop.registry import champion_dir
from liveloop.training import distributed
from liveloop.training.checkpoint import drop_checkpoints, latest_checkpoint, load_optimizer, save_checkpoint, save_model_dir
from liveloop.training.examples import TrainDataError, batch_contexts, build_training_data
from liveloop.training.heads import fit_score_heads, recent_popularity
from liveloop.training.losses import ctr_loss, sampled_softmax_loss
from liveloop.training.replay import load_replay, update_replay
from liveloop.workspace import Workspace

LOG_FILE = "train_log.csv"
LOG_FIELDS = ["step", "loss", "retrieval_loss", "ctr_loss", "lr", "samples_per_s"]
FINAL_LOSS_WINDOW = 5  # final_loss = mean of the last few steps (one step is noisy)


class TrainError(ValueError):
    """A training run cannot start: bad init_from, finished out dir, no examples, bad freeze depth."""


@dataclass
class TrainResult:
    model_dir: Path
    steps: int
    samples: int
    wall_seconds: float
    final_loss: float
    init_from: str
    data_versions: dict[str, str | None]


class Objective(nn.Module):
    """All losses in one forward, so DDP sees every trainable parameter used inside the module it wraps."""

    def __init__(self, net: TwoTower, ctr_weight: float):
        super().__init__()
        self.net, self.ctr_weight = net, ctr_weight

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        users, items = self.net(batch["user_inputs"], batch["item_inputs"])
        # raw cosine / temperature: stage 1 learns the text representation at full sharpness; how much the text
        # counts next to popularity and repeats (text_scale) is stage 2's job
        logits = (users @ items.T).float() / self.net.temperature
        rows = batch["bonus_rows"]
        bonus = torch.zeros_like(logits).index_put((rows[:, 0], rows[:, 1]), self.net.bonus(batch["bonus_feats"]).float())
        retrieval = sampled_softmax_loss(logits + bonus, batch["item_codes"], batch["weights"], batch["log_q"])
        out = {"retrieval_loss": retrieval, "loss": retrieval}
        if "ctr_user_inputs" in batch:
            cu, ci = self.net(batch["ctr_user_inputs"], batch["ctr_item_inputs"])
            out["ctr_loss"] = ctr_loss(self.net.ctr_logits_paired(cu, ci), batch["ctr_labels"])
            out["loss"] = retrieval + self.ctr_weight * out["ctr_loss"]
        return out


def data_versions(batch_dirs: list[Path]) -> dict[str, str | None]:
    """Batch day -> DVC md5 from the `<batch>.dvc` file beside it (None when not tracked yet)."""
    import yaml

    versions = {}
    for d in batch_dirs:
        dvc_file = Path(f"{Path(d)}.dvc")
        md5 = None
        if dvc_file.exists():
            outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
            md5 = outs[0].get("md5")
        versions[Path(d).name] = md5
    return versions


def resolve_init(init_from: str, ws: Workspace) -> tuple[Path | None, str]:
    """(model dir to start from or None for scratch, label recorded in the result)."""
    if init_from == "scratch":
        return None, "scratch"
    if init_from == "champion":
        champion = champion_dir(ws)
        return (champion, "champion") if champion is not None else (None, "scratch")
    path = Path(init_from)
    if not (path / WEIGHTS_FILE).exists():
        raise TrainError(f"init_from {init_from!r} is not scratch, champion, or a model dir holding {WEIGHTS_FILE}")
    return path, str(path)


def freeze_lower_layers(net: TwoTower, k: int) -> None:
    """Freeze the embeddings and the lowest k transformer layers (no gradient, no optimizer state)."""
    n_layers = net.encoder.config.num_hidden_layers
    if k > n_layers:
        raise TrainError(f"train.freeze_layers={k} but the encoder has only {n_layers} layers")
    if k == 0:
        return
    for name, param in net.encoder.named_parameters():
        layer = re.search(r"layer\.(\d+)\.", name)
        if "embeddings." in name or (layer is not None and int(layer.group(1)) < k):
            param.requires_grad_(False)


def lr_scale(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% at the end of the budget."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.choice(n, size=k, replace=n < k)


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _write_log(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train(cfg: Config, ws: Workspace, batch_dirs: list[Path], init_from: str, out_dir: Path) -> TrainResult:
    """Fine-tune on `batch_dirs` (+ replay) for train.steps steps into out_dir; resumes from out_dir's last checkpoint."""
    tc, mc, seed = cfg.train, cfg.model, cfg.seed
    out_dir = Path(out_dir)
    if (out_dir / STATE_FILE).exists() and json.loads((out_dir / STATE_FILE).read_text()).get("done"):
        raise TrainError(f"{out_dir} already holds a finished model; give a new out dir (or delete it to retrain)")
    started = time.perf_counter()
    try:
        dist = distributed.setup(tc.device)
    except ModelError as exc:
        raise TrainError(f"train.device: {exc}") from None
    try:
        # ---- init: resume beats init_from ------------------------------------------------------------------------
        resume = latest_checkpoint(out_dir)
        if resume is not None:
            rec = Recommender.load(resume, device=str(dist.device))
            start_step, init_label, parent = rec.state["step"], rec.state["init_from"], rec.state.get("parent")
            seen_before = rec.state.get("parent_data_versions", {})
        else:
            source, init_label = resolve_init(init_from, ws)
            torch.manual_seed(seed)
            rec = Recommender.load(source, str(dist.device)) if source else Recommender.from_config(mc, str(dist.device))
            start_step, parent = 0, (str(source) if source else None)
            seen_before = rec.state.get("all_data_versions", rec.state.get("data_versions", {})) if source else {}
        net = rec.net

        # ---- data: new batches + replay ----------------------------------------------------------------------------
        data = build_training_data([Path(d) for d in batch_dirs], ws.accepted, rec.config, tc, seed)
        # replay mixes history into incremental updates only: a scratch model trains on exactly the given batches
        # (so `dvc repro` rebuilds it from its declared inputs alone)
        replay = load_replay(ws.replay)
        replay = replay if tc.replay_ratio > 0 and parent is not None else replay.iloc[:0]
        if data.examples.empty and replay.empty:
            raise TrainDataError("the batches hold no click/add_to_cart/purchase events with a known item to learn from")
        popularity = pd.concat([data.examples["item_id"], replay["item_id"]]).value_counts(normalize=True)
        n_replay = round(tc.batch_size * tc.replay_ratio) if not replay.empty else 0
        n_replay = tc.batch_size if data.examples.empty else n_replay
        n_new = tc.batch_size - n_replay
        use_ctr = tc.ctr_batch_size > 0 and tc.ctr_weight > 0 and len(data.ctr_pairs) > 0

        # ---- model + optimizer -------------------------------------------------------------------------------------
        freeze_lower_layers(net, tc.freeze_layers)
        net.ctr_head.requires_grad_(use_ctr)
        for weight in (net.text_scale, net.popularity_weight):  # stage 1 never uses them (stage 2 fits them)
            weight.requires_grad_(False)
        encoder_params = [p for p in net.encoder.parameters() if p.requires_grad]
        head_params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
        optimizer = torch.optim.AdamW(
            [{"params": encoder_params, "lr": tc.lr}, {"params": head_params, "lr": tc.head_lr}],
            weight_decay=tc.weight_decay,
        )
        base_lrs = [tc.lr, tc.head_lr]
        if resume is not None:
            load_optimizer(optimizer, resume)
        objective = Objective(net, tc.ctr_weight)
        model = objective
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(objective, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        log_rows = _read_log(resume / LOG_FILE) if resume is not None else []
        autocast = torch.autocast(device_type=dist.device.type, dtype=torch.bfloat16, enabled=tc.bf16)

        # ---- loop ----------------------------------------------------------------------------------------------------
        net.train()
        steps = range(start_step, tc.steps)
        if dist.is_master:
            from tqdm.auto import tqdm

            steps = tqdm(steps, initial=start_step, total=tc.steps, desc="training", unit="step")
        for step in steps:
            t0 = time.perf_counter()
            # per-step seeds: a resumed run samples exactly what the uninterrupted run would have
            rng = np.random.default_rng([seed, step, dist.rank])
            torch.manual_seed(seed * 100_003 + step * 101 + dist.rank)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_scale(step, tc)

            parts = [data.examples.iloc[_pick(rng, len(data.examples), n_new)], replay.iloc[_pick(rng, len(replay), n_replay)]]
            rows = pd.concat([part for part in parts if len(part)], ignore_index=True)
            item_ids = rows["item_id"].astype(str).tolist()
            bonus_rows, bonus_feats = repeat_features(batch_contexts(rows, item_ids, data.index), item_ids)
            batch = {
                "user_inputs": rec.tokenize(rows["user_text"].tolist()),
                "item_inputs": rec.tokenize(rows["item_text"].tolist()),
                "bonus_rows": torch.from_numpy(bonus_rows).to(dist.device),
                "bonus_feats": torch.from_numpy(bonus_feats).to(dist.device),
                "item_codes": torch.from_numpy(pd.factorize(rows["item_id"])[0]).to(dist.device),
                "weights": torch.tensor(rows["weight"].to_numpy(np.float32), device=dist.device),
                "log_q": torch.tensor(np.log(popularity.loc[item_ids].to_numpy(np.float32)), device=dist.device)
                if tc.logq_correction
                else None,
            }
            if use_ctr:
                pairs = data.ctr_pairs.iloc[_pick(rng, len(data.ctr_pairs), tc.ctr_batch_size)]
                batch["ctr_user_inputs"] = rec.tokenize(pairs["user_text"].tolist())
                batch["ctr_item_inputs"] = rec.tokenize(pairs["item_text"].tolist())
                batch["ctr_labels"] = torch.tensor(pairs["label"].to_numpy(np.float32), device=dist.device)

            with autocast:
                losses = model(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip)
            optimizer.step()

            if dist.is_master:
                dt = time.perf_counter() - t0
                log_rows.append(
                    {
                        "step": step + 1,
                        "loss": round(losses["loss"].item(), 6),
                        "retrieval_loss": round(losses["retrieval_loss"].item(), 6),
                        "ctr_loss": round(losses["ctr_loss"].item(), 6) if "ctr_loss" in losses else "",
                        "lr": optimizer.param_groups[0]["lr"],
                        "samples_per_s": round(tc.batch_size * dist.world_size / dt, 2),
                    }
                )
                steps.set_postfix(loss=f"{losses['loss'].item():.3f}")
                if (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps:
                    rec.state = {"step": step + 1, "init_from": init_label, "parent": parent, "done": False,
                                 "parent_data_versions": seen_before}
                    ckpt = save_checkpoint(rec, optimizer, out_dir, step + 1)
                    _write_log(ckpt / LOG_FILE, log_rows)
            distributed.barrier(dist)

        # ---- final model dir + replay --------------------------------------------------------------------------------
        heads = None
        if dist.is_master:  # stage 2 + the popularity the model serves with
            net.eval()
            rec.item_popularity = recent_popularity(data.index.positives, mc.popularity_days)
            if tc.head_steps and len(data.examples):
                heads = fit_score_heads(rec, data, tc, mc.popularity_days, seed)
        wall = time.perf_counter() - started
        losses_seen = [float(r["loss"]) for r in log_rows]
        final_loss = float(np.mean(losses_seen[-FINAL_LOSS_WINDOW:])) if losses_seen else float("nan")
        samples = (tc.steps - start_step) * tc.batch_size * dist.world_size
        versions = data_versions(batch_dirs)
        if dist.is_master:
            speeds = [float(r["samples_per_s"]) for r in log_rows]
            rec.state = {
                "step": tc.steps,
                "done": True,
                "init_from": init_label,
                "parent": parent,
                "resumed_from": start_step if resume is not None else None,
                "data_versions": versions,
                "all_data_versions": {**seen_before, **versions},  # the whole lineage: what `liveloop train` skips
                "seed": seed,
                "train": tc.model_dump(mode="json"),
                "metrics": {
                    "final_loss": final_loss,
                    "samples": samples,
                    "wall_seconds": round(wall, 2),
                    "median_samples_per_s": float(np.median(speeds)) if speeds else None,
                    "examples": len(data.examples),
                    "replay_examples": len(replay),
                    "ctr_pairs": len(data.ctr_pairs),
                    "score_heads": asdict(heads) if heads else None,
                    "score_weights": {"text_scale": net.text_scale.item(), "popularity_weight": net.popularity_weight.item()},
                },
            }
            save_model_dir(rec, optimizer, out_dir)
            _write_log(out_dir / LOG_FILE, log_rows)
            drop_checkpoints(out_dir)
            if tc.replay_size > 0 and not data.examples.empty:
                update_replay(ws.replay, data.examples, data.index, tc.replay_size, rec.config.history_items, seed)
        distributed.barrier(dist)
        return TrainResult(out_dir, tc.steps, samples, wall, final_loss, init_label, versions)
    except ModelError as exc:
        raise TrainError(str(exc)) from None
    finally:
        distributed.teardown(dist)
