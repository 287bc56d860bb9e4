"""The training loop, nanoGPT style: one function that reads top to bottom.

init (resume > scratch | champion | path) -> data (new batches + replay from the context window) -> cached vectors
-> stage 1: the user/item towers on cached vectors, softmax over the catalogue, `train.steps` steps, the best step on
a validation slice kept (step 0, the start, included) -> stage 2: the ranker (liveloop.training.ranking), kept only
when it beats the retrieval order and the start's ranker on validation -> final model dir.

Under torchrun each rank samples its own rows; rank 0 alone validates, saves and logs. Nothing here writes the
replay set or any shared state: a rejected candidate changes nothing outside its own folder.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from liveloop.config import Config, TrainConfig
from liveloop.model.recommender import STATE_FILE, WEIGHTS_FILE, ModelError, Recommender
from liveloop.model.ranker import repeat_shares
from liveloop.model.scoring import CatalogueScorer
from liveloop.model.vectors import EncoderError
from liveloop.registry import champion_dir
from liveloop.training import distributed
from liveloop.training.checkpoint import drop_checkpoints, latest_checkpoint, load_optimizer, save_checkpoint, save_model_dir
from liveloop.training.examples import TrainDataError, build_training_data, live_masks, states_at
from liveloop.training.ranking import fit_ranker
from liveloop.workspace import Workspace

LOG_FILE = "train_log.csv"
LOG_FIELDS = ["step", "loss", "lr", "samples_per_s", "validation_ndcg"]
FINAL_LOSS_WINDOW = 20
VALIDATION_K = 10
MIN_VALIDATION = 20
BOOTSTRAP_SAMPLES = 1000  # resamples of the tower's validation users (beats_start)


class TrainError(ValueError):
    """A training run cannot start: bad init_from, finished out dir, no examples."""


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
    """Softmax over the (sampled) catalogue for a batch of user sequences; the module DDP wraps."""

    def __init__(self, rec: Recommender):
        super().__init__()
        self.net, self.rec = rec.net, rec

    def forward(self, vecs, types, ages, mask, item_base, live, targets, weights) -> torch.Tensor:
        users = self.net.users(vecs, types, ages, mask)
        logits = (users @ self.net.items(item_base).T / self.net.temperature).masked_fill(~live, float("-inf"))
        per_row = F.cross_entropy(logits.float(), targets, reduction="none")
        return (per_row * weights).sum() / weights.sum()


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


def lr_scale(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% at the end of the budget."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


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


def newest_days(days, share: float) -> set:
    """The newest days holding at least `share` of the rows (at least one day, never all of them)."""
    counts = days.value_counts().sort_index(ascending=False)
    need, kept, total = share * len(days), [], 0
    for day, n in counts.items():
        if total >= need or len(kept) == len(counts) - 1:
            break
        kept.append(day)
        total += n
    return set(kept)


def validation_rows(examples, share: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(validation parts, rows held out of training).

    With several days, the newest days (at least `share` of the rows) are held out whole: the tower must do well on a day it never saw (learning
    "what is hot today" from other users of the same day does not carry over to tomorrow's rooms). With one day, a
    seeded `share` of its users is held out with all their rows (a user's cuts share most of their history).
    The parts are cuts at the day's start (cross-day taste) and later cuts (in-session reaction); steps are compared
    on the mean of both, so a tower that learns one by forgetting the other is not kept."""
    if examples.empty:
        return [], np.zeros(0, dtype=np.int64)
    newest = examples.loc[examples["day"] == examples["day"].max()]
    if examples["day"].nunique() >= 2:
        held = examples.loc[examples["day"].isin(newest_days(examples["day"], share))]
    else:
        users = np.array(sorted(set(newest["user_id"])), dtype=object)
        rng = np.random.default_rng([seed, 4])
        chosen = set(rng.choice(users, size=int(round(len(users) * share)), replace=False)) if len(users) else set()
        held = newest.loc[newest["user_id"].isin(chosen)]
    first = held.drop_duplicates(["user_id", "ts"], keep="first")
    at_start = (first["ts"] == first["ts"].dt.normalize()).to_numpy()
    rows = first.index.to_numpy(np.int64)
    return [p for p in (rows[at_start], rows[~at_start]) if len(p)], held.index.to_numpy(np.int64)


def tower_inputs(inputs: dict, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(event vectors, types, ages, mask) of some examples; vectors are gathered from the token table per call, so
    memory stays O(tokens), not O(examples x window x dim)."""
    return (inputs["table"][inputs["rows"][rows]], inputs["types"][rows], inputs["ages"][rows], inputs["mask"][rows])


def own_items(states, row_of: dict[str, int], window: int) -> np.ndarray:
    """[examples, window] catalogue rows of the items in each user's sequence (-1 pads): masked out of the tower's
    softmax, since the ranker, not the tower, decides about items the user already engaged with."""
    out = np.full((len(states), window), -1, dtype=np.int64)
    for i, s in enumerate(states):
        rows = list(dict.fromkeys(row_of[t[2:]] for t in s.tokens if t.startswith("i:") and t[2:] in row_of))[:window]
        out[i, :len(rows)] = rows
    return out


def tower_gains(rec: Recommender, inputs: dict, parts: list[torch.Tensor], item_base: torch.Tensor,
                live, targets: torch.Tensor) -> list[np.ndarray]:
    """Per validation part, each example's NDCG@10 of its target among the items live at its cut (ties count
    against it); the tower's validation score is the mean of the parts' means."""
    return [_gains(rec, inputs, rows, item_base, live, targets) for rows in parts]


def _gains(rec: Recommender, inputs: dict, rows: torch.Tensor, item_base: torch.Tensor, live: torch.Tensor,
           targets: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        rec.net.eval()
        users = rec.net.users(*tower_inputs(inputs, rows))
        logits = (users @ rec.net.items(item_base).T).masked_fill(~live(rows), float("-inf"))
        target = logits.gather(1, targets[rows][:, None])
        rank = (logits >= target).sum(1).float()
        gain = torch.where(rank <= VALIDATION_K, 1.0 / torch.log2(rank + 1.0), torch.zeros_like(rank))
    return gain.cpu().numpy().astype(np.float64)


def beats_start(now: list[np.ndarray], start: list[np.ndarray], users: list[np.ndarray], confidence: float,
                seed: int) -> bool:
    """Whether a trained step's validation score beats the start's with `confidence`: the paired difference of the
    mean of the parts' means, bootstrapped over validation users (a user's examples move together). A validation
    slice of a few hundred examples is noisy; a step that wins it by chance loses the next window."""
    diffs = np.concatenate([(n - s) / (len(n) * len(now)) for n, s in zip(now, start)])
    _, user_index = np.unique(np.concatenate(users), return_inverse=True)
    per_user = np.bincount(user_index, weights=diffs)
    draws = np.random.default_rng([seed, 6]).integers(0, len(per_user), (BOOTSTRAP_SAMPLES, len(per_user)))
    return float(np.quantile(per_user[draws].sum(1), 1.0 - confidence)) > 0.0


def train(cfg: Config, ws: Workspace, batch_dirs: list[Path], init_from: str, out_dir: Path) -> TrainResult:
    """Update the recommender on `batch_dirs` (+ replay) into out_dir; resumes from out_dir's last checkpoint."""
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
        cache = ws.state / "vectors"
        resume = latest_checkpoint(out_dir)
        if resume is not None:
            rec = Recommender.load(resume, device=str(dist.device), cache_dir=cache)
            start_step, init_label, parent = rec.state["step"], rec.state["init_from"], rec.state.get("parent")
            seen_before = rec.state.get("parent_data_versions", {})
            start_ranker = rec.state.get("start_ranker")
        else:
            source, init_label = resolve_init(init_from, ws)
            rec = (Recommender.load(source, str(dist.device), cache_dir=cache) if source
                   else Recommender.from_config(mc, str(dist.device), seed=seed, cache_dir=cache))
            start_step, parent = 0, (str(source) if source else None)
            seen_before = rec.state.get("all_data_versions", rec.state.get("data_versions", {})) if source else {}
            start_ranker = rec.ranker.to_json() if rec.ranker is not None else None
        net = rec.net

        # ---- data: examples on cached vectors --------------------------------------------------------------------
        data = build_training_data([Path(d) for d in batch_dirs], ws.accepted, tc, seed, replay=parent is not None,
                                   holdout_root=ws.splits / "holdout")
        # the ranker's groups start at most train.rank_days before the newest day: repeat shares from before then,
        # so no group reads its own labels; the model keeps the shares over everything for serving
        first_group = pd.Timestamp(max(data.new_days)) - pd.Timedelta(days=tc.rank_days - 1)
        repeat = repeat_shares(data.label_hist, data.tables["items"], before_ns=first_group.value)
        scorer = CatalogueScorer.from_items(rec, data.tables["items"], data.popularity, data.tables["streams"], repeat,
                                            item_ids=data.catalogue)
        ex = data.examples
        window = rec.config.history_window  # the model's own window (a warm start keeps it), as serving reads it
        states = states_at(data.hist, ex["user_id"], ex["ts"], window)
        # the tower learns what is new to the user; items already in the history (the funnel's next step, repeats)
        # are the ranker's job, with its count and recency features
        keep = np.array([not s.empty and f"i:{item}" not in s.tokens and item not in s.item_counts
                         for s, item in zip(states, ex["item_id"])])
        ex, states = ex.loc[keep].reset_index(drop=True), [s for s, k in zip(states, keep) if k]
        if ex.empty:
            raise TrainDataError("the batches hold no click/add_to_cart/purchase event by a user with earlier history")
        seq = rec.sequence_batch(states, scorer.item_base)
        dev = dist.device
        inputs = {k: torch.as_tensor(seq[k], device=dev) for k in ("table", "rows", "types", "ages", "mask")}
        item_base = torch.as_tensor(scorer.table.base, device=dev)
        targets = torch.as_tensor(ex["item_id"].map(scorer.table.row_of).to_numpy(np.int64), device=dev)
        weights = torch.as_tensor(ex["weight"].to_numpy(np.float32), device=dev)
        cut_masks, cut_of = live_masks(data, ex)
        cut_masks, cut_of = torch.as_tensor(cut_masks, device=dev), torch.as_tensor(cut_of, device=dev)
        cut_masks[cut_of, targets] = True  # a target taken from a room outside the window is still a target
        own = torch.as_tensor(own_items(states, scorer.table.row_of, window), device=dev)

        def candidates(rows: torch.Tensor) -> torch.Tensor:
            """[rows, catalogue] bool: live at the example's cut and not already in the user's history."""
            live = cut_masks[cut_of[rows]].clone()
            mine = own[rows]
            r, c = torch.nonzero(mine >= 0, as_tuple=True)
            live[r, mine[r, c]] = False
            return live
        # a warm start was trained on the replayed days: it is compared with trained steps on the new days only
        val_parts, held = validation_rows(ex.loc[~ex["replay"]], tc.validation, seed)  # replay: before unseen_start
        n_val = sum(len(p) for p in val_parts)
        n_val = n_val if n_val >= MIN_VALIDATION and len(ex) - len(held) >= MIN_VALIDATION else 0
        train_rows = np.setdiff1d(np.arange(len(ex)), held) if n_val else np.arange(len(ex))
        val_idx = [torch.as_tensor(part, device=dev) for part in val_parts]

        # ---- model + optimizer -------------------------------------------------------------------------------------
        adapters = [p for n, p in net.named_parameters() if n.startswith(("item_adapter", "user_adapter"))]
        others = [p for n, p in net.named_parameters() if not n.startswith(("item_adapter", "user_adapter"))]
        # no decay on the adapters: they start at the identity (the pretrained geometry), decay would erode it
        optimizer = torch.optim.AdamW([{"params": adapters, "weight_decay": 0.0},
                                       {"params": others, "weight_decay": tc.weight_decay}], lr=tc.lr)
        if resume is not None:
            load_optimizer(optimizer, resume)
        objective = Objective(rec)
        model = objective
        if dist.enabled:
            model = nn.parallel.DistributedDataParallel(objective, device_ids=[dev.index] if dev.type == "cuda" else None)
        log_rows = _read_log(resume / LOG_FILE) if resume is not None else []
        autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=tc.bf16)

        def snapshot() -> dict[str, torch.Tensor]:
            return {k: v.detach().clone() for k, v in net.state_dict().items()}

        val_users = [ex["user_id"].to_numpy(object)[part] for part in val_parts]

        def validate() -> list[np.ndarray] | None:
            return tower_gains(rec, inputs, val_idx, item_base, candidates, targets) if n_val and dist.is_master else None

        def score(gains: list[np.ndarray]) -> float:
            return float(np.mean([g.mean() for g in gains]))

        if start_step == 0:
            start_gains = validate()
            best = before = score(start_gains) if start_gains is not None else None
        else:  # resumed: the start is gone, its validation gains were checkpointed
            start_gains = [np.asarray(g) for g in rec.state.get("start_gains") or []] or None
            best, before = rec.state.get("best_validation"), rec.state.get("start_validation")
        best_step = rec.state.get("best_step", 0) if resume is not None else 0
        best_state = snapshot()
        n_items = item_base.shape[0]

        # ---- stage 1: the towers -------------------------------------------------------------------------------------
        # without a validation slice the tower cannot be compared with its start, so it keeps the start
        steps = range(start_step, tc.steps if n_val else start_step)
        if dist.is_master and n_val and tc.steps > start_step:
            from tqdm.auto import tqdm

            steps = tqdm(steps, initial=start_step, total=tc.steps, desc="training towers", unit="step", mininterval=2)
        for step in steps:
            t0 = time.perf_counter()
            # per-step seeds: a resumed run samples exactly what the uninterrupted run would have
            rng = np.random.default_rng([seed, step, dist.rank])
            torch.manual_seed(seed * 100_003 + step * 101 + dist.rank)
            for group in optimizer.param_groups:
                group["lr"] = tc.lr * lr_scale(step, tc)
            batch = torch.as_tensor(rng.choice(train_rows, size=min(tc.batch_size, len(train_rows)), replace=False), device=dev)
            batch_targets = targets[batch]
            if n_items > tc.max_negatives:  # sampled softmax: the batch's targets plus uniform negatives
                cols = torch.unique(torch.cat([batch_targets, torch.as_tensor(rng.choice(n_items, tc.max_negatives, replace=False), device=dev)]))
                batch_targets = torch.searchsorted(cols, batch_targets)
                cand, live = item_base[cols], candidates(batch)[:, cols]
            else:
                cand, live = item_base, candidates(batch)
            net.train()
            with autocast:
                loss = model(*tower_inputs(inputs, batch), cand, live, batch_targets, weights[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
            optimizer.step()
            if dist.is_master:
                row = {"step": step + 1, "loss": round(loss.item(), 6), "lr": optimizer.param_groups[0]["lr"],
                       "samples_per_s": round(len(batch) * dist.world_size / (time.perf_counter() - t0), 1),
                       "validation_ndcg": ""}
                if n_val and ((step + 1) % tc.eval_every == 0 or step + 1 == tc.steps):
                    gains = validate()
                    current = score(gains)
                    row["validation_ndcg"] = round(current, 6)
                    if current > best and beats_start(gains, start_gains, val_users, tc.validation_confidence, seed):
                        best, best_state, best_step = current, snapshot(), step + 1
                log_rows.append(row)
                if (step + 1) % tc.checkpoint_every == 0 and step + 1 < tc.steps:
                    rec.state = {"step": step + 1, "init_from": init_label, "parent": parent, "done": False,
                                 "parent_data_versions": seen_before, "best_validation": best, "best_step": best_step,
                                 "start_validation": before,
                                 "start_gains": [g.round(6).tolist() for g in start_gains] if start_gains else None,
                                 "start_ranker": start_ranker}
                    ckpt = save_checkpoint(rec, optimizer, out_dir, step + 1)
                    _write_log(ckpt / LOG_FILE, log_rows)
            distributed.barrier(dist)
        if n_val:  # the best step on validation, the start included: an update cannot make the tower worse there
            net.load_state_dict(best_state)
        net.eval()

        # ---- stage 2: the ranker + final model dir ----------------------------------------------------------------
        wall = time.perf_counter() - started
        samples = (tc.steps - start_step) * min(tc.batch_size, len(train_rows)) * dist.world_size
        versions = data_versions(batch_dirs)
        losses_seen = [float(r["loss"]) for r in log_rows]
        final_loss = float(np.mean(losses_seen[-FINAL_LOSS_WINDOW:])) if losses_seen else float("nan")
        if dist.is_master:
            # the item vectors moved in stage 1: the ranker reads the final ones
            scorer = CatalogueScorer.from_items(rec, data.tables["items"], data.popularity, data.tables["streams"], repeat,
                                            item_ids=data.catalogue)
            rank_started = time.perf_counter()
            ranker, rank_info = fit_ranker(scorer, data, tc, seed, start_ranker)
            rec.ranker = ranker
            rec.stats = {"repeat_share": repeat_shares(data.label_hist, data.tables["items"])}
            speeds = [float(r["samples_per_s"]) for r in log_rows[-(tc.steps - start_step):]] if tc.steps > start_step else []
            rec.state = {
                "step": tc.steps, "done": True, "init_from": init_label, "parent": parent,
                "resumed_from": start_step if resume is not None else None,
                "data_versions": versions, "all_data_versions": {**seen_before, **versions},
                "seed": seed, "train": tc.model_dump(mode="json"),
                "metrics": {
                    "final_loss": final_loss, "samples": samples, "wall_seconds": round(time.perf_counter() - started, 2),
                    "tower_seconds": round(wall, 2), "ranker_seconds": round(time.perf_counter() - rank_started, 2),
                    "median_samples_per_s": float(np.median(speeds)) if speeds else None,
                    "examples": len(ex), "replay_examples": int(ex["replay"].sum()),
                    "validation_examples": n_val,
                    "tower_validation_from": str(ex["ts"].iloc[held].min()) if n_val else None,
                    "tower_validation_ndcg_start": before,
                    "tower_validation_ndcg": best, "tower_best_step": best_step,
                    "ranker": rank_info,
                },
            }
            save_model_dir(rec, optimizer, out_dir)
            _write_log(out_dir / LOG_FILE, log_rows)
            drop_checkpoints(out_dir)
        distributed.barrier(dist)
        return TrainResult(out_dir, tc.steps, samples, time.perf_counter() - started, final_loss, init_label, versions)
    except (ModelError, EncoderError) as exc:
        raise TrainError(str(exc)) from None
    finally:
        distributed.teardown(dist)
