"""What the model knows about a user at time t: their last events as a sequence (for the user tower) and the counts
the ranker reads (repeats, recency, category and host affinity, prices paid, comments).

One implementation for training, evaluation and serving: `Histories` holds behaviour as flat arrays sorted by
(user, time), built from an events table (training, evaluation) or from one user's event records (serving), and
`state_at` cuts one user's history at a time. Ids never enter the user tower: items are their text vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from liveloop.data.schema import POSITIVE_EVENT_TYPES

# Event type codes of the user tower's sequence (0 pads). A purchase with negative quantity is a return.
TYPE_CODES: dict[str, int] = {"click": 1, "add_to_cart": 2, "purchase": 3, "comment": 4}
RETURN_CODE = 5
N_TYPES = 6
POSITIVE_CODES = frozenset(TYPE_CODES[t] for t in POSITIVE_EVENT_TYPES)
# Time since each event, bucketed (hours): within the session, the hour, the day, the week, the month, older.
AGE_EDGES_HOURS = (1 / 6, 1.0, 6.0, 24.0, 72.0, 168.0, 720.0)
N_AGE = len(AGE_EDGES_HOURS) + 1
COMMENT_CHARS = 120
ITEM_TOKEN, COMMENT_TOKEN = "i:", "c:"
NS_PER_DAY = 86_400 * 10**9


def age_buckets(age_days: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(AGE_EDGES_HOURS) / 24.0, age_days, side="right").astype(np.int64)


@dataclass
class UserState:
    """One user at one time: the newest-first event sequence and the ranker's counts."""

    tokens: list[str]  # "i:<item_id>" or "c:<comment text>", newest first, at most the history window
    types: np.ndarray  # [len] type codes
    ages: np.ndarray  # [len] days before the query time
    item_counts: dict[str, float] = field(default_factory=dict)  # positives per item
    purchase_counts: dict[str, float] = field(default_factory=dict)
    last_days: dict[str, float] = field(default_factory=dict)  # days since the last positive per item
    host_counts: dict[str, float] = field(default_factory=dict)  # positives in each host's rooms
    positives: int = 0
    mean_log_price: float = float("nan")  # of purchases with a price
    comments: list[str] = field(default_factory=list)  # comment tokens, newest first
    last_host: str = ""  # host of the room of the newest event ("" outside rooms): the session the user is in

    @property
    def empty(self) -> bool:
        return not self.tokens


EMPTY_STATE = UserState([], np.zeros(0, np.int64), np.zeros(0))


class Histories:
    """Behaviour events (click, cart, purchase, comment) of many users as arrays sorted by (user, time)."""

    def __init__(self, users, ts_ns, types, tokens, items, hosts, prices):
        order = np.lexsort((ts_ns, users)) if len(users) else np.zeros(0, np.int64)
        self.users = np.asarray(users, dtype=object)[order]
        self.ts = np.asarray(ts_ns, dtype=np.int64)[order]
        self.types = np.asarray(types, dtype=np.int64)[order]
        self.tokens = np.asarray(tokens, dtype=object)[order]
        self.items = np.asarray(items, dtype=object)[order]
        self.hosts = np.asarray(hosts, dtype=object)[order]
        self.prices = np.asarray(prices, dtype=np.float64)[order]
        self._span: dict[str, tuple[int, int]] = {}
        if len(self.users):
            change = np.flatnonzero(self.users[1:] != self.users[:-1]) + 1
            bounds = np.concatenate([[0], change, [len(self.users)]])
            self._span = {self.users[lo]: (int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])}

    @classmethod
    def from_events(cls, events: pd.DataFrame, streams: pd.DataFrame | None = None) -> "Histories":
        """From an events table (schema columns); streams map each event's room to its host."""
        ev = events.loc[events["event_type"].isin(list(TYPE_CODES))]
        host_of = {} if streams is None or streams.empty else dict(zip(streams["stream_id"].astype(str),
                                                                       streams["host_id"].astype(str)))
        return cls(*_columns(
            ev["user_id"].astype(str).to_numpy(), pd.to_datetime(ev["ts"]).to_numpy("datetime64[ns]").astype(np.int64),
            ev["event_type"].astype(str).to_numpy(), ev["item_id"].astype("string").fillna("").astype(str).to_numpy(),
            ev["text"].astype("string").fillna("").astype(str).to_numpy(),
            ev["quantity"].astype("float64").to_numpy(), ev["price"].astype("float64").to_numpy(),
            ev["stream_id"].astype("string").fillna("").astype(str).map(host_of).fillna("").to_numpy(),
        ))

    @classmethod
    def from_records(cls, records: list[dict], host_of: dict[str, str]) -> "Histories":
        """From event dicts (the service's per-user store); the same columns as from_events."""
        def col(name, default=None):
            return [r.get(name, default) for r in records]

        def num(values):
            return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

        kept = [r for r in records if r.get("event_type") in TYPE_CODES]
        records = kept
        ts = np.array([pd.Timestamp(t).value for t in col("ts")], dtype=np.int64)
        return cls(*_columns(
            np.array([str(u) for u in col("user_id")], dtype=object), ts, np.array(col("event_type"), dtype=object),
            np.array(["" if i is None else str(i) for i in col("item_id")], dtype=object),
            np.array([t if isinstance(t, str) else "" for t in col("text")], dtype=object),
            num(col("quantity")), num(col("price")),
            np.array([host_of.get(s, "") if isinstance(s, str) else "" for s in col("stream_id")], dtype=object),
        ))

    def known(self, user_id: str) -> bool:
        return user_id in self._span

    def state_at(self, user_id: str, t_ns: int, window: int) -> UserState:
        """The user's state from events strictly before t_ns; the sequence keeps the newest `window` events."""
        lo, hi = self._span.get(user_id, (0, 0))
        cut = lo + int(np.searchsorted(self.ts[lo:hi], t_ns, side="left"))
        if cut == lo:
            return EMPTY_STATE
        start = max(lo, cut - window)
        seq = slice(start, cut)
        tokens = self.tokens[seq][::-1].tolist()
        types = self.types[seq][::-1]
        ages = (t_ns - self.ts[seq][::-1]) / NS_PER_DAY
        whole = slice(lo, cut)
        types_all = self.types[whole]
        pos = np.isin(types_all, list(POSITIVE_CODES))
        items = self.items[whole][pos]
        state = UserState(tokens, types, ages, positives=int(pos.sum()))
        if len(items):
            keys, inverse, counts = np.unique(items.astype(str), return_inverse=True, return_counts=True)
            last = np.zeros(len(keys), dtype=np.int64)
            np.maximum.at(last, inverse, self.ts[whole][pos])
            state.item_counts = dict(zip(keys.tolist(), counts.astype(float).tolist()))
            state.last_days = dict(zip(keys.tolist(), ((t_ns - last) / NS_PER_DAY).tolist()))
            hosts = self.hosts[whole][pos]
            hosts = hosts[hosts != ""]
            if len(hosts):
                hk, hc = np.unique(hosts.astype(str), return_counts=True)
                state.host_counts = dict(zip(hk.tolist(), hc.astype(float).tolist()))
        bought = types_all == TYPE_CODES["purchase"]
        if bought.any():
            pk, pc = np.unique(self.items[whole][bought].astype(str), return_counts=True)
            state.purchase_counts = dict(zip(pk.tolist(), pc.astype(float).tolist()))
            paid = self.prices[whole][bought]
            paid = paid[np.isfinite(paid) & (paid > 0)]
            if len(paid):
                state.mean_log_price = float(np.log(paid).mean())
        state.comments = [t for t, c in zip(tokens, types) if c == TYPE_CODES["comment"]]
        state.last_host = str(self.hosts[cut - 1])
        return state


def _columns(users, ts, event_types, items, texts, quantity, prices, hosts):
    """Shared column logic of from_events / from_records: type codes (returns), tokens (item or comment)."""
    types = np.array([TYPE_CODES[t] for t in event_types], dtype=np.int64)
    types[(types == TYPE_CODES["purchase"]) & (np.nan_to_num(quantity, nan=1.0) < 0)] = RETURN_CODE
    comment = types == TYPE_CODES["comment"]
    tokens = np.where(comment, np.char.add(COMMENT_TOKEN, np.array([t[:COMMENT_CHARS] for t in texts], dtype=str)),
                      np.char.add(ITEM_TOKEN, items.astype(str))) if len(types) else np.zeros(0, dtype=object)
    return users, ts, types, np.asarray(tokens, dtype=object), items, hosts, prices
