"""Stage 2 of training: fit the projection heads and the score combination (text scale, popularity weight, repeat
bonus) on cached encoder states, with a full softmax over the whole catalogue.

Encoder passes dominate CPU training cost. Here each distinct text is encoded once, after which a step is a few small
matrix products, so the score is fitted on thousands of examples rather than the encoder's few hundred. The softmax
runs over every item (no sampled negatives, no logQ correction), so the popularity weight is learned directly.
The newest examples are held out (each user's first one, like the evaluation protocols' "next wanted item") and the
step with the best NDCG@10 on them is kept, the untrained start included, so stage 2 cannot make the model worse there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from liveloop.config import TrainConfig
from liveloop.model.recommender import Recommender
from liveloop.model.text import DAY
from liveloop.training.examples import TrainingData

MIN_VALIDATION = 20  # fewer held-out examples than this are too noisy to pick a step: train on all, keep the last
VALIDATION_K = 10  # steps are compared by NDCG@VALIDATION_K of the held-out targets
LOSS_WINDOW = 10  # train_loss_first / _last average this many steps
# The score weights are O(1-10) logits, the head weights O(0.05): at one learning rate the weights could hardly leave
# their priors within a few hundred steps (text_scale moved 0.05 -> 0.23 in 300 steps on the simulator).
SCORE_WEIGHT_LR_FACTOR = 30.0


@dataclass
class HeadFit:
    steps: int
    examples: int
    validation_examples: int
    best_step: int
    validation_ndcg_before: float | None  # the model as it came out of stage 1 (step 0)
    validation_ndcg_after: float | None  # the kept step
    train_loss_first: float | None
    train_loss_last: float | None
    seconds: float


def _day_index(ts: pd.Series, base: pd.Timestamp) -> np.ndarray:
    return ((pd.to_datetime(ts) - base) // DAY).to_numpy(np.int64)


def popularity_table(positives: pd.DataFrame, col: dict[str, int], window_days: int) -> tuple[np.ndarray, pd.Timestamp]:
    """[days + 1, items] positives per item in the `window_days` whole days before each day (row k covers days
    k - window .. k - 1 counted from the first day; the last row is "after the last day"), and that first day."""
    pos = positives.loc[positives["item_id"].isin(col.keys())]
    base = pd.Timestamp(pos["ts"].min()).floor("D") if len(pos) else pd.Timestamp(0)
    day = _day_index(pos["ts"], base)
    n_days = int(day.max()) + 1 if len(day) else 1
    daily = np.zeros((n_days + 1, len(col)), dtype=np.float64)
    np.add.at(daily, (day + 1, pos["item_id"].map(col).to_numpy(np.int64)), 1.0)
    before = np.cumsum(daily, axis=0)  # row k: positives on days < k
    lagged = np.vstack([np.zeros((window_days, len(col))), before])[: n_days + 1]
    return (before - lagged).astype(np.float32), base


def recent_popularity(positives: pd.DataFrame, window_days: int) -> dict[str, float]:
    """item_id -> positives in the last `window_days` days up to the newest one: the popularity the model serves with."""
    items = sorted(set(positives["item_id"].astype(str)))
    if not items:
        return {}
    table, _ = popularity_table(positives, {item: j for j, item in enumerate(items)}, window_days)
    return {item: float(c) for item, c in zip(items, table[-1]) if c > 0}


def past_item_features(positives: pd.DataFrame, user_ids, times, col: dict[str, int]):
    """Sparse repeat features of every catalogue item each (user, time) query had positives on strictly before:
    (query row, item column, [k, 2] log1p count / log1p days since last), the same features `repeat_features` reads."""
    pos = positives.loc[positives["item_id"].isin(col.keys()), ["user_id", "item_id", "ts"]]
    codes = {u: i for i, u in enumerate(pd.unique(pos["user_id"]))}
    query = pd.DataFrame({"row": np.arange(len(user_ids)), "user": pd.Series(user_ids).map(codes).fillna(-1).astype(np.int64).to_numpy(),
                          "t": pd.to_datetime(pd.Series(times)).to_numpy()})
    hist = pd.DataFrame({"user": pos["user_id"].map(codes).to_numpy(np.int64),
                         "item": pos["item_id"].map(col).to_numpy(np.int64), "ts": pos["ts"].to_numpy()})
    pairs = query.merge(hist, on="user")
    pairs = pairs.loc[pairs["ts"] < pairs["t"]]
    stats = pairs.groupby(["row", "item"], sort=False).agg(count=("ts", "size"), last=("ts", "max"), t=("t", "first"))
    stats = stats.reset_index()
    days = ((stats["t"] - stats["last"]) / DAY).clip(lower=0.0).to_numpy(np.float64)
    feats = np.stack([np.log1p(stats["count"].to_numpy(np.float64)), np.log1p(days)], axis=1).astype(np.float32)
    return stats["row"].to_numpy(np.int64), stats["item"].to_numpy(np.int64), feats


class _CatalogueScorer:
    """Full-catalogue logits for a subset of cached examples, with the same combination as Recommender.score."""

    def __init__(self, rec: Recommender, item_states, user_states, popularity: np.ndarray, day: np.ndarray, repeat):
        self.net, dev = rec.net, rec.device
        # clones: the cached states come from inference mode, which autograd cannot record
        self.item_states, self.user_states = item_states.clone().to(dev), user_states.clone().to(dev)
        # per day, not per example: [days, items] stays small where [examples, items] would not on big catalogues
        self.popularity = torch.log1p(torch.from_numpy(popularity)).to(dev)
        self.day = torch.from_numpy(day).to(dev)
        self.rep_rows, self.rep_cols, self.rep_feats = (torch.from_numpy(a).to(dev) for a in repeat)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        net = self.net
        items = net.project("item", self.item_states)
        users = net.project("user", self.user_states[idx])
        out = net.text_logits(users, items) + net.popularity_weight * self.popularity[self.day[idx]]
        slot = torch.full((self.user_states.shape[0],), -1, dtype=torch.long, device=idx.device)
        slot[idx] = torch.arange(len(idx), device=idx.device)
        keep = slot[self.rep_rows] >= 0
        if keep.any():
            bonus = net.bonus(self.rep_feats[keep])
            out = out.index_put((slot[self.rep_rows[keep]], self.rep_cols[keep]), bonus, accumulate=True)
        return out


def _loss(scorer: _CatalogueScorer, idx: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    per_row = F.cross_entropy(scorer.logits(idx), targets[idx], reduction="none")
    return (per_row * weights[idx]).sum() / weights[idx].sum()


def _ndcg(scorer: _CatalogueScorer, idx: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean NDCG@VALIDATION_K of one target per row over the whole catalogue (ties count against the target)."""
    with torch.no_grad():
        logits = scorer.logits(idx)
        target = logits.gather(1, targets[idx][:, None])
        rank = (logits >= target).sum(1).float()  # 1-based, the target itself included
        gain = torch.where(rank <= VALIDATION_K, 1.0 / torch.log2(rank + 1.0), torch.zeros_like(rank))
    return float(gain.mean())


def _validation_rows(examples: pd.DataFrame, share: float) -> np.ndarray:
    """Rows of each user's first example inside the newest `share` of the (time-sorted) examples."""
    start = len(examples) - int(len(examples) * share)
    newest = examples.iloc[start:]
    return newest.drop_duplicates("user_id", keep="first").index.to_numpy(np.int64)


def fit_score_heads(rec: Recommender, data: TrainingData, tc: TrainConfig, popularity_days: int, seed: int) -> HeadFit:
    """Fit heads + score weights of `rec` in place on up to tc.head_examples examples; returns what happened."""
    started = time.perf_counter()
    net = rec.net
    rng = np.random.default_rng([seed, 2])
    examples = data.examples
    if len(examples) > tc.head_examples:
        examples = examples.iloc[np.sort(rng.choice(len(examples), tc.head_examples, replace=False))]
    examples = examples.sort_values("ts", kind="stable").reset_index(drop=True)
    catalogue = list(data.item_texts)
    col = {item: j for j, item in enumerate(catalogue)}
    positives = data.index.positives

    table, base = popularity_table(positives, col, popularity_days)
    day = np.clip(_day_index(examples["ts"], base), 0, len(table) - 1)
    repeat = past_item_features(positives, examples["user_id"].to_numpy(), examples["ts"], col)
    net.eval()
    item_states = rec.pooled_states([data.item_texts[i] for i in catalogue], progress="stage 2: encoding items")
    user_states = rec.pooled_states(examples["user_text"].tolist(), progress="stage 2: encoding users")
    scorer = _CatalogueScorer(rec, item_states, user_states, table, day, repeat)
    targets = torch.tensor(examples["item_id"].map(col).to_numpy(np.int64), device=rec.device)
    weights = torch.tensor(examples["weight"].to_numpy(np.float32), device=rec.device)

    val_rows = _validation_rows(examples, tc.head_validation)
    n_val = len(val_rows) if len(val_rows) >= MIN_VALIDATION and len(examples) - len(val_rows) >= MIN_VALIDATION else 0
    train_idx = np.setdiff1d(np.arange(len(examples)), val_rows) if n_val else np.arange(len(examples))
    val_idx = torch.from_numpy(val_rows).to(rec.device)
    heads = [p for m in (net.user_head, net.item_head, net.repeat_bonus) for p in m.parameters()]
    score_weights = [net.text_scale, net.popularity_weight, *net.repeat_linear.parameters()]
    params = heads + score_weights
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [{"params": heads, "lr": tc.head_lr, "weight_decay": tc.weight_decay},
         {"params": score_weights, "lr": tc.head_lr * SCORE_WEIGHT_LR_FACTOR, "weight_decay": 0.0}]
    )

    def validation_ndcg() -> float | None:
        return _ndcg(scorer, val_idx, targets) if n_val else None

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("encoder.")}

    before = best = validation_ndcg()
    best_state, best_step, losses = snapshot(), 0, []
    steps = range(tc.head_steps)
    if tc.head_steps:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="stage 2: fitting score heads", unit="step")
    for step in steps:
        batch = torch.from_numpy(rng.choice(train_idx, size=min(tc.head_batch_size, len(train_idx)), replace=False))
        loss = _loss(scorer, batch.to(rec.device), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        last = step + 1 == tc.head_steps
        if n_val and ((step + 1) % tc.head_eval_every == 0 or last):
            current = validation_ndcg()
            if current > best:
                best, best_state, best_step = current, snapshot(), step + 1
        elif not n_val and last:
            best_state, best_step = snapshot(), step + 1
    net.load_state_dict(best_state, strict=False)
    return HeadFit(
        steps=tc.head_steps,
        examples=len(examples),
        validation_examples=n_val,
        best_step=best_step,
        validation_ndcg_before=before,
        validation_ndcg_after=best,
        train_loss_first=float(np.mean(losses[:LOSS_WINDOW])) if losses else None,
        train_loss_last=float(np.mean(losses[-LOSS_WINDOW:])) if losses else None,
        seconds=round(time.perf_counter() - started, 2),
    )
