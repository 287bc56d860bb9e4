"""The ranking stage: features of (user state, candidate item) pairs and the LightGBM models over them.

The two-tower score finds items whose text matches what the user did; what a live-room shopper takes next also
depends on repeats (consumables are bought again, owned durables are not), on what is popular in the rooms now, on
the hosts and categories the user follows, on price and on what they just wrote in the chat. These are the
features; a LightGBM lambdarank model learns how they combine on each dataset (nothing is hand-weighted), and a
binary LightGBM on impressions (clicked / carted / bought vs shown-not-taken) gives /score its probabilities.

`pair_features` is the one implementation: training, evaluation and serving all call it. Models are stored as
LightGBM's own text format inside ranker.json (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from liveloop.model.history import COMMENT_TOKEN, ITEM_TOKEN, NS_PER_DAY, POSITIVE_CODES, Histories, UserState

FEATURES: tuple[str, ...] = (
    "retrieval_cosine", "log_item_count", "log_purchase_count", "days_since_last", "log_popularity_window",
    "log_popularity_day", "category_share", "log_category_count", "host_share", "log_price", "price_gap",
    "comment_similarity", "log_user_positives", "item_age_days", "repeat_share", "history_length",
    "pretrained_cosine", "same_host_as_last_event", "days_since_last_event", "price_vs_category",
    "recent_category_share",
)
RECENT_DAYS = 1.0  # recent_category_share: the user's takes in the last day (of the sequence window)
DAY_NS = NS_PER_DAY
REPEAT_PRIOR = 2.0  # pseudo-counts pulling an item's repeat share towards its category's


@dataclass
class ItemTable:
    """Per-item facts aligned with `item_ids`: category, price, first seen, vectors, repeat share."""

    item_ids: list[str]
    category: np.ndarray  # str per item
    log_price: np.ndarray  # NaN where unknown
    first_seen_ns: np.ndarray  # int64, -1 where unknown
    base: np.ndarray  # [n, dim] frozen text vectors
    vecs: np.ndarray  # [n, dim] item-tower vectors
    repeat_share: np.ndarray  # share of positives on the item from users who had it before (smoothed)
    price_vs_category: np.ndarray  # log price minus the median log price of its category in this table (NaN unknown)

    def __post_init__(self):
        self.row_of = {item: j for j, item in enumerate(self.item_ids)}

    @classmethod
    def build(cls, items: pd.DataFrame, item_ids: list[str], base: np.ndarray, vecs: np.ndarray,
              repeat: dict[str, float]) -> "ItemTable":
        frame = items.drop_duplicates("item_id", keep="last").set_index(items.drop_duplicates("item_id", keep="last")["item_id"].astype(str))
        frame = frame.reindex(item_ids)
        price = frame["price"].astype("float64").to_numpy()
        log_price = np.where(price > 0, np.log(np.where(price > 0, price, 1.0)), np.nan)
        category = frame["category"].astype("string").fillna("").astype(str).to_numpy()
        # cheaper or dearer than its peers: what every shopper weighs, known before anyone has taken the item
        peers = pd.Series(log_price).groupby(category).transform("median").to_numpy()
        first = pd.to_datetime(frame["first_seen"])
        first_ns = np.where(first.notna(), first.to_numpy("datetime64[ns]").astype(np.int64), -1)
        return cls(item_ids=list(item_ids), category=category, log_price=log_price,
                   price_vs_category=log_price - peers,
                   first_seen_ns=first_ns.astype(np.int64), base=np.asarray(base, np.float32),
                   vecs=np.asarray(vecs, np.float32),
                   repeat_share=np.array([repeat.get(i, np.nan) for i in item_ids], dtype=np.float64))


def repeat_shares(hist: Histories, items: pd.DataFrame, before_ns: int | None = None) -> dict[str, float]:
    """item -> share of its positives made by users who had already engaged with it, smoothed to its category;
    only positives before `before_ns` count when given (so training groups never read their own labels)."""
    pos = np.isin(hist.types, list(POSITIVE_CODES))
    if before_ns is not None:
        pos &= hist.ts < before_ns
    if not pos.any():
        return {}
    frame = pd.DataFrame({"user": hist.users[pos], "item": hist.items[pos].astype(str)})
    frame["repeat"] = frame.duplicated(["user", "item"]).to_numpy(np.float64)  # rows are in time order per user
    category = dict(zip(items["item_id"].astype(str), items["category"].astype("string").fillna("").astype(str)))
    frame["category"] = frame["item"].map(category).fillna("")
    by_cat = frame.groupby("category")["repeat"].mean()
    by_item = frame.groupby("item").agg(n=("repeat", "size"), r=("repeat", "sum"), category=("category", "first"))
    prior = by_item["category"].map(by_cat).fillna(frame["repeat"].mean())
    shares = (by_item["r"] + REPEAT_PRIOR * prior) / (by_item["n"] + REPEAT_PRIOR)
    return {str(k): float(v) for k, v in shares.items()}


class Popularity:
    """Positives per item over time: counts in [t - window, t) for any t."""

    def __init__(self, item_ids: np.ndarray, ts_ns: np.ndarray):
        order = np.argsort(ts_ns, kind="stable")
        self.items = np.asarray(item_ids, dtype=object)[order]
        self.ts = np.asarray(ts_ns, dtype=np.int64)[order]
        self.version = 0  # bumped by add(): lets callers cache counts
        self._rows: tuple | None = None  # (row_of, its size, version, catalogue row of each positive)

    def add(self, item_ids, ts_ns) -> None:
        """New positives (the service's feedback), kept in time order."""
        items = np.concatenate([self.items, np.asarray(item_ids, dtype=object)])
        ts = np.concatenate([self.ts, np.asarray(ts_ns, dtype=np.int64)])
        order = np.argsort(ts, kind="stable")
        self.items, self.ts, self.version = items[order], ts[order], self.version + 1

    @classmethod
    def from_histories(cls, hist: Histories) -> "Popularity":
        pos = np.isin(hist.types, list(POSITIVE_CODES))
        return cls(hist.items[pos], hist.ts[pos])

    def counts(self, t_ns: int, window_days: float, row_of: dict[str, int]) -> np.ndarray:
        lo = np.searchsorted(self.ts, t_ns - int(window_days * DAY_NS), side="left")
        hi = np.searchsorted(self.ts, t_ns, side="left")
        rows = self._catalogue_rows(row_of)[lo:hi]
        return np.bincount(rows[rows >= 0], minlength=len(row_of)).astype(np.float64)

    def _catalogue_rows(self, row_of: dict[str, int]) -> np.ndarray:
        """Each positive's row in `row_of` (-1 outside it), mapped once per catalogue and version: counts() runs for
        every distinct query time (a training update asks thousands), and a per-call lookup was most of its cost."""
        cached = self._rows
        if cached is None or cached[0] is not row_of or cached[1] != len(row_of) or cached[2] != self.version:
            keys = np.fromiter(row_of.keys(), dtype=object, count=len(row_of))
            values = np.fromiter(row_of.values(), dtype=np.int64, count=len(row_of))
            pos = pd.Index(keys).get_indexer(self.items) if len(keys) else np.full(len(self.items), -1)
            cached = self._rows = (row_of, len(row_of), self.version, np.where(pos >= 0, values[pos], -1))
        return cached[3]


def pair_features(state: UserState, user_vec: np.ndarray, cand: np.ndarray, table: ItemTable,
                  pop_window: np.ndarray, pop_day: np.ndarray, live_host: np.ndarray | None,
                  comment_vecs: np.ndarray | None, t_ns: int, prior_vec: np.ndarray) -> np.ndarray:
    """[len(cand), len(FEATURES)] float32 for one user against candidate rows of `table`.

    pop_* are per-row of `table`; live_host (per candidate, "" unknown) is the host of the room showing it now;
    prior_vec is the untrained tower's user vector (Recommender.prior_vector)."""
    n = len(cand)
    ids = [table.item_ids[j] for j in cand]
    out = np.full((n, len(FEATURES)), np.nan, dtype=np.float32)
    out[:, 0] = table.vecs[cand] @ np.asarray(user_vec, np.float32)
    counts = np.array([state.item_counts.get(i, 0.0) for i in ids])
    out[:, 1] = np.log1p(counts)
    out[:, 2] = np.log1p([state.purchase_counts.get(i, 0.0) for i in ids])
    out[:, 3] = [state.last_days.get(i, np.nan) for i in ids]
    out[:, 4] = np.log1p(pop_window[cand])
    out[:, 5] = np.log1p(pop_day[cand])
    if state.positives:
        cats = table.category[cand]
        mine: dict[str, float] = {}
        for item, c in state.item_counts.items():
            j = table.row_of.get(item)
            if j is not None:
                mine[table.category[j]] = mine.get(table.category[j], 0.0) + c
        cat_counts = np.array([mine.get(c, 0.0) for c in cats])
        out[:, 6] = cat_counts / state.positives
        out[:, 7] = np.log1p(cat_counts)
        if live_host is not None and state.host_counts:
            out[:, 8] = [state.host_counts.get(h, 0.0) / state.positives if h else np.nan for h in live_host]
        out[:, 12] = np.log1p(state.positives)
    out[:, 9] = table.log_price[cand]
    if np.isfinite(state.mean_log_price):
        out[:, 10] = np.abs(table.log_price[cand] - state.mean_log_price)
    if comment_vecs is not None and len(comment_vecs):
        out[:, 11] = (table.base[cand] @ np.asarray(comment_vecs, np.float32).T).max(axis=1)
    first = table.first_seen_ns[cand]
    out[:, 13] = np.where(first >= 0, (t_ns - first) / DAY_NS, np.nan)
    out[:, 14] = table.repeat_share[cand]
    out[:, 15] = len(state.tokens)
    out[:, 16] = table.base[cand] @ np.asarray(prior_vec, np.float32)
    if live_host is not None and state.last_host:
        out[:, 17] = [float(h == state.last_host) if h else np.nan for h in live_host]
    if len(state.ages):
        out[:, 18] = float(state.ages[0])
    out[:, 19] = table.price_vs_category[cand]
    recent = [tok[len(ITEM_TOKEN):] for tok, code, age in zip(state.tokens, state.types, state.ages)
              if code in POSITIVE_CODES and age < RECENT_DAYS]
    rows = [table.row_of[i] for i in recent if i in table.row_of]
    if rows:  # what they take today, which a taste shift reaches long before the all-time share
        cats, counts = np.unique(table.category[rows], return_counts=True)
        share = dict(zip(cats.tolist(), (counts / len(rows)).tolist()))
        out[:, 20] = [share.get(c, 0.0) for c in table.category[cand]]
    return out


def comment_texts(state: UserState) -> list[str]:
    return [c[len(COMMENT_TOKEN):] or "(empty comment)" for c in state.comments]


class Ranker:
    """LightGBM lambdarank (order) + optional binary (CTR probabilities), stored as model strings in JSON."""

    def __init__(self, rank_model: str | None, ctr_model: str | None, info: dict | None = None):
        import lightgbm as lgb

        self.rank_model, self.ctr_model, self.info = rank_model, ctr_model, info or {}
        self._rank = lgb.Booster(model_str=rank_model) if rank_model else None
        self._ctr = lgb.Booster(model_str=ctr_model) if ctr_model else None
        self._rank_cols, self._ctr_cols = (_columns(b) if b is not None else None for b in (self._rank, self._ctr))

    @property
    def ranks(self) -> bool:
        return self._rank is not None

    @property
    def has_ctr(self) -> bool:
        return self._ctr is not None

    def rank_scores(self, x: np.ndarray) -> np.ndarray:
        return self._rank.predict(_select(x, self._rank_cols), num_threads=1) if len(x) else np.zeros(0)

    def ctr(self, x: np.ndarray) -> np.ndarray:
        return self._ctr.predict(_select(x, self._ctr_cols), num_threads=1) if len(x) else np.zeros(0)

    def to_json(self) -> dict:
        return {"rank_model": self.rank_model, "ctr_model": self.ctr_model, "info": self.info}

    @classmethod
    def from_json(cls, data: dict) -> "Ranker":
        return cls(data.get("rank_model"), data.get("ctr_model"), data.get("info"))


def _columns(booster) -> np.ndarray | None:
    """Columns of FEATURES a booster reads, by the names it was trained with (None: all, in order). A model trained
    before a feature was added keeps ranking on the features it knows, so an upgrade does not strand the champion."""
    from liveloop.model.recommender import ModelError

    names = booster.feature_name()
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ModelError(f"ranker.json has a model trained on features {unknown} that this code does not compute "
                         f"(it computes {list(FEATURES)}): retrain it with this version")
    cols = [FEATURES.index(n) for n in names]
    return None if cols == list(range(len(FEATURES))) else np.asarray(cols)


def _select(x: np.ndarray, cols: np.ndarray | None) -> np.ndarray:
    return x if cols is None else x[:, cols]
