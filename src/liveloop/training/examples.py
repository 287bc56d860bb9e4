"""Training examples from batches: retrieval positives with the user's context before them, CTR pairs from impressions,
and an index that answers "how often / how recently had this user interacted with that item at time t".

Everything is rendered to text here once, so the training loop only samples rows and tokenizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import ModelConfig, TrainConfig
from liveloop.data.batches import batch_day, concat_batches, list_batches
from liveloop.model.text import DAY, UserContext, behaviour_fragments, context_texts_at, item_texts

EXAMPLE_COLUMNS = ["user_id", "ts", "item_id", "user_text", "item_text", "weight", "history"]


class TrainDataError(ValueError):
    """The batches cannot produce training examples (none given, unreadable, or no positives)."""


@dataclass
class TrainingData:
    examples: pd.DataFrame  # EXAMPLE_COLUMNS; history is None (looked up in `index`) for examples from new batches
    ctr_pairs: pd.DataFrame  # user_text, item_text, label
    index: "HistoryIndex"
    item_texts: dict[str, str]  # item_id -> text for every item of the batches read (the catalogue stage 2 ranks)


class HistoryIndex:
    """Counts and recency of each (user, item) positive, answerable at any time t with one vectorised searchsorted."""

    def __init__(self, behaviour: pd.DataFrame):
        pos = behaviour[behaviour["positive"]]
        self._users = {u: i for i, u in enumerate(pd.unique(pos["user_id"]))}
        self._items = {it: i for i, it in enumerate(pd.unique(pos["item_id"]))}
        self._base = pos["ts"].min() if len(pos) else pd.Timestamp(0)
        days = ((pos["ts"] - self._base) / DAY).to_numpy(dtype=np.float64)
        self._span = float(days.max()) + 2.0 if len(days) else 2.0
        pair = pos["user_id"].map(self._users).to_numpy(np.int64) * len(self._items) + pos["item_id"].map(self._items).to_numpy(np.int64)
        order = np.argsort(pair * self._span + days, kind="stable")
        self._keys = (pair * self._span + days)[order]
        self._days = days[order]
        self._behaviour = pos
        self._by_user: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def positives(self) -> pd.DataFrame:
        """The positive behaviour rows (user_id, ts, item_id, ...) the index answers from."""
        return self._behaviour

    def lookup(self, user_ids, times, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """(count, days since last) of positives strictly before each time; count 0 where there were none."""
        u = np.array([self._users.get(x, -1) for x in user_ids], dtype=np.int64)
        i = np.array([self._items.get(x, -1) for x in item_ids], dtype=np.int64)
        t = ((pd.to_datetime(pd.Series(times)) - self._base) / DAY).to_numpy(dtype=np.float64)
        known = (u >= 0) & (i >= 0)
        pair_base = np.where(known, u * len(self._items) + i, 0) * self._span
        lo = np.searchsorted(self._keys, pair_base - 0.5, side="left")
        hi = np.searchsorted(self._keys, pair_base + np.clip(t, -1.0, self._span - 1.0), side="left")
        count = np.where(known, np.maximum(hi - lo, 0), 0)
        last = self._days[np.clip(hi - 1, 0, max(len(self._days) - 1, 0))] if len(self._days) else np.zeros_like(t)
        return count.astype(np.float32), np.where(count > 0, t - last, 0.0).astype(np.float32)

    def snapshot(self, user_id: str, time: pd.Timestamp, max_items: int) -> str:
        """JSON {item: [count, days since last]} of the user's `max_items` most recent past items (stored in replay)."""
        if self._by_user is None:  # built on first use: only runs that update the replay need it
            pos = self._behaviour
            self._by_user = {
                u: (g["ts"].to_numpy(), g["item_id"].to_numpy()) for u, g in pos.groupby("user_id", sort=False)
            }
        times, items = self._by_user.get(user_id, (np.array([], dtype="datetime64[ns]"), np.array([], dtype=object)))
        cut = np.searchsorted(times, np.datetime64(pd.Timestamp(time)), side="left")
        newest_first = items[:cut][::-1].astype(str)
        if not len(newest_first):
            return "{}"
        keys, first, counts = np.unique(newest_first, return_index=True, return_counts=True)
        keep = np.argsort(first, kind="stable")[:max_items]
        last_ts = times[:cut][::-1][first[keep]]
        days = (np.datetime64(pd.Timestamp(time)) - last_ts) / np.timedelta64(1, "D")
        return json.dumps({str(keys[k]): [float(counts[k]), float(d)] for k, d in zip(keep, days)})


def batch_contexts(rows: pd.DataFrame, item_ids: list[str], index: HistoryIndex) -> list[UserContext]:
    """UserContext per sampled row, holding repeat features for the given (in-batch) items only."""
    contexts = [UserContext(text) for text in rows["user_text"]]
    fresh = np.flatnonzero(rows["history"].isna().to_numpy())
    if len(fresh):
        n = len(item_ids)
        users = np.repeat(rows["user_id"].to_numpy()[fresh], n)
        times = np.repeat(rows["ts"].to_numpy()[fresh], n)
        count, days = index.lookup(users, times, np.tile(np.asarray(item_ids, dtype=object), len(fresh)))
        for k, row in enumerate(fresh):
            sl = slice(k * n, (k + 1) * n)
            for item, c, d in zip(item_ids, count[sl], days[sl]):
                if c > 0:
                    contexts[row].item_counts[item] = float(c)
                    contexts[row].last_days[item] = float(d)
    for row in np.flatnonzero(rows["history"].notna().to_numpy()):
        for item, (c, d) in json.loads(rows["history"].iloc[row]).items():
            contexts[row].item_counts[item] = c
            contexts[row].last_days[item] = d
    return contexts


def context_batches(batch_dirs: list[Path], accepted_root: Path, context_days: int) -> list[Path]:
    """Earlier accepted batches within `context_days` before the first training batch: read for user history only."""
    first = min(batch_day(d) for d in batch_dirs)
    names = {Path(d).resolve() for d in batch_dirs}
    return [
        d
        for d in list_batches(accepted_root)
        if d.resolve() not in names and 0 < (first - batch_day(d)).days <= context_days
    ]


def build_training_data(batch_dirs: list[Path], accepted_root: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int) -> TrainingData:
    """Examples from the positives of `batch_dirs`; contexts may also use earlier accepted batches."""
    if not batch_dirs:
        raise TrainDataError("no batches given to train on")
    for d in batch_dirs:
        if not (Path(d) / "events.parquet").exists():
            raise TrainDataError(f"{d} is not a batch folder (events.parquet missing)")
        try:
            batch_day(d)
        except ValueError as exc:
            raise TrainDataError(str(exc)) from None
    history = context_batches(batch_dirs, accepted_root, train_cfg.context_days)
    tables = concat_batches([*history, *batch_dirs])
    new_events = concat_batches(batch_dirs)["events"]
    behaviour = behaviour_fragments(tables["events"], tables["items"])
    texts = item_texts(tables["items"], tables["streams"])

    weights = {"purchase": train_cfg.purchase_weight, "add_to_cart": train_cfg.cart_weight, "click": train_cfg.click_weight}
    qty = new_events["quantity"].astype("float64")
    pos = new_events[new_events["event_type"].isin(list(weights)) & (qty.isna() | (qty > 0))]
    pos = pos[pos["item_id"].astype(str).isin(texts.keys())]
    examples = pd.DataFrame(
        {
            "user_id": pos["user_id"].astype(str).to_numpy(),
            "ts": pd.to_datetime(pos["ts"]).to_numpy(),
            "item_id": pos["item_id"].astype(str).to_numpy(),
            "user_text": context_texts_at(behaviour, pos["user_id"], pos["ts"], model_cfg.history_events),
            "item_text": pos["item_id"].astype(str).map(texts).to_numpy(),
            "weight": pos["event_type"].map(weights).to_numpy(dtype=np.float32),
            "history": None,
        }
    )
    ctr_pairs = _ctr_pairs(new_events, behaviour, texts, model_cfg, train_cfg, seed)
    return TrainingData(examples, ctr_pairs, HistoryIndex(behaviour), texts)


def _ctr_pairs(events: pd.DataFrame, behaviour: pd.DataFrame, texts: dict[str, str], model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int) -> pd.DataFrame:
    """Impressions labelled 1 when the same user clicked the same item in the same room on the same day."""
    imp = events[(events["event_type"] == "impression") & events["item_id"].astype(str).isin(texts.keys())]
    if imp.empty or train_cfg.ctr_batch_size == 0:
        return pd.DataFrame(columns=["user_text", "item_text", "label"])
    if len(imp) > train_cfg.max_ctr_pairs:
        imp = imp.sample(train_cfg.max_ctr_pairs, random_state=seed)

    def key(df: pd.DataFrame) -> pd.Series:
        day = pd.to_datetime(df["ts"]).dt.strftime("%Y-%m-%d")
        return df["user_id"].astype(str) + "\x1f" + df["item_id"].astype(str) + "\x1f" + df["stream_id"].astype("string").fillna("") + "\x1f" + day

    clicked = set(key(events[events["event_type"] == "click"]))
    return pd.DataFrame(
        {
            "user_text": context_texts_at(behaviour, imp["user_id"], imp["ts"], model_cfg.history_events),
            "item_text": imp["item_id"].astype(str).map(texts).to_numpy(),
            "label": key(imp).isin(clicked).to_numpy(dtype=np.float32),
        }
    )
