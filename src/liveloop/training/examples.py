"""Training data from batches, all on cached vectors: user-tower examples (the user's state just before each positive
event, the item they took), ranking groups (a user's state at a cut in the day, the items live after it, what they
took) and CTR rows (impressions, taken or not).

Earlier accepted batches within `train.context_days` supply history (and, for warm starts, replay examples);
their held-out tails (the loop's evaluation sets) stay history but never labels, so no model is scored in-sample
on an earlier day's holdout. Nothing here renders text or tokenizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import TrainConfig
from liveloop.data.batches import batch_day, concat_batches, list_batches
from liveloop.data.schema import positive_mask
from liveloop.model.history import Histories, UserState
from liveloop.model.ranker import Popularity

GRADES = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


class TrainDataError(ValueError):
    """The batches cannot produce training examples (none given, unreadable, or no positives)."""


@dataclass
class TrainingData:
    tables: dict  # items, streams, users, events of context + new batches
    label_events: pd.DataFrame  # the events that may be labels: tables["events"] less earlier days' held-out tails
    hist: Histories  # every event: the users' states
    label_hist: Histories  # label_events only: item statistics of takes (repeat shares)
    popularity: Popularity
    catalogue: list[str]  # every item id of the tables (the softmax vocabulary)
    examples: pd.DataFrame  # user_id, ts (cut), day, until, item_id, grade, weight, replay (bool)
    new_days: list  # dates of the batches trained on
    context_days: list  # dates of the earlier batches read for history

    @property
    def unseen_start(self) -> int:
        """Start (ns) of the first day trained on now. A warm start was fitted on every day before it, so only the
        days after it can compare the start with a new model: each stage validates there when it has a start (on
        older days the start scored labels it was refitted on: a stable-world update kept its ranker at 0.525 vs
        0.438, the two equal on the next day's holdout). Examples before it are the replay ones."""
        return int(pd.Timestamp(min(self.new_days)).value)


def context_batches(batch_dirs: list[Path], accepted_root: Path, context_days: int) -> list[Path]:
    """Earlier accepted batches within `context_days` before the first training batch: read for user history."""
    first = min(batch_day(d) for d in batch_dirs)
    names = {Path(d).resolve() for d in batch_dirs}
    return [d for d in list_batches(accepted_root)
            if d.resolve() not in names and 0 < (first - batch_day(d)).days <= context_days]


def held_out_event_ids(batches: list[Path], holdout_root: Path | None) -> set[str]:
    """Event ids of the held-out tails (`holdout_root`/<batch name>) of `batches`: what the loop evaluates on."""
    if holdout_root is None:
        return set()
    ids: set[str] = set()
    for d in batches:
        tail = Path(holdout_root) / Path(d).name / "events.parquet"
        if tail.exists():
            ids.update(pd.read_parquet(tail, columns=["event_id"])["event_id"].astype(str))
    return ids


def build_training_data(batch_dirs: list[Path], accepted_root: Path, tc: TrainConfig, seed: int,
                        replay: bool, holdout_root: Path | None = None) -> TrainingData:
    """Positives of `batch_dirs` as examples (+ replay positives from the context batches when `replay`); events in
    the context batches' held-out tails under `holdout_root` are history only."""
    if not batch_dirs:
        raise TrainDataError("no batches given to train on")
    for d in batch_dirs:
        if not (Path(d) / "events.parquet").exists():
            raise TrainDataError(f"{d} is not a batch folder (events.parquet missing)")
        try:
            batch_day(d)
        except ValueError as exc:
            raise TrainDataError(str(exc)) from None
    history = context_batches(batch_dirs, accepted_root, tc.context_days)
    tables = concat_batches([*history, *batch_dirs])
    hist = Histories.from_events(tables["events"], tables["streams"])
    catalogue = sorted(set(tables["items"]["item_id"].astype(str)))
    new_start = pd.Timestamp(min(batch_day(d) for d in batch_dirs))
    held_out = held_out_event_ids(history, holdout_root)
    events = tables["events"]
    label_events = events.loc[~events["event_id"].astype(str).isin(held_out)] if held_out else events
    examples = cut_examples(label_events, tc)
    examples = examples.loc[examples["item_id"].isin(set(catalogue))].reset_index(drop=True)
    weights = {3.0: tc.purchase_weight, 2.0: tc.cart_weight, 1.0: tc.click_weight}
    examples["weight"] = examples["grade"].map(weights).to_numpy(np.float32)
    examples["replay"] = examples["ts"] < new_start
    if not replay:
        examples = examples.loc[~examples["replay"]]
    rng = np.random.default_rng([seed, 1])
    fresh, old = examples.loc[~examples["replay"]], examples.loc[examples["replay"]]
    n_old = min(len(old), int(len(fresh) * tc.replay_ratio / max(1e-9, 1 - tc.replay_ratio))) if replay else 0
    if len(fresh) + n_old > tc.max_examples:  # keep the newest examples, replay in proportion
        n_old = min(n_old, int(tc.max_examples * tc.replay_ratio)) if replay else 0
        fresh = fresh.iloc[-(tc.max_examples - n_old):]
    old = old.iloc[np.sort(rng.choice(len(old), n_old, replace=False))] if n_old else old.iloc[:0]
    examples = pd.concat([old, fresh]).sort_values("ts", kind="stable").reset_index(drop=True)
    label_hist = Histories.from_events(label_events, tables["streams"]) if held_out else hist
    return TrainingData(tables, label_events, hist, label_hist, Popularity.from_histories(hist), catalogue, examples,
                        sorted({batch_day(d) for d in batch_dirs}), sorted({batch_day(d) for d in history}))


def live_masks(data: TrainingData, examples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """([cuts, catalogue] bool: items live between each cut and its `until`, [examples] cut index).

    The towers' softmax runs over these (LiveRec's availability), so they cannot learn "what is on today" instead
    of taste; without rooms every item is a candidate."""
    col = {item: j for j, item in enumerate(data.catalogue)}
    keys = list(dict.fromkeys(zip(examples["ts"], examples["until"])))
    index = {k: g for g, k in enumerate(keys)}
    masks = np.ones((len(keys), len(col)), dtype=bool)
    if not data.tables["streams"].empty:
        for g, (t, until) in enumerate(keys):
            live = live_after(data.tables["streams"], pd.Timestamp(t), pd.Timestamp(until))
            if live:
                masks[g] = False
                masks[g, [col[i] for i in live if i in col]] = True
    return masks, np.array([index[k] for k in zip(examples["ts"], examples["until"])], dtype=np.int64)


def states_at(hist: Histories, user_ids, times, window: int) -> list[UserState]:
    """The user state strictly before each (user, time)."""
    ts = pd.to_datetime(pd.Series(times)).to_numpy("datetime64[ns]").astype(np.int64)
    return [hist.state_at(str(u), int(t), window) for u, t in zip(user_ids, ts)]


@dataclass
class RankGroup:
    user_id: str
    t_ns: int
    day: object
    candidates: list[str]  # item ids
    live_host: list[str]  # host of the room showing each candidate after the cut ("" unknown)
    labels: np.ndarray  # grade per candidate (0 = not taken)


def live_after(streams: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, str]:
    """item -> host of the first room showing it that is live at some point in [start, end]."""
    if streams.empty:
        return {}
    live = streams.loc[(streams["end"] > start) & (streams["start"] <= end)].sort_values("start")
    out: dict[str, str] = {}
    for host, ids in zip(live["host_id"].astype(str), live["item_ids"]):
        for item in ids if ids is not None else ():
            out.setdefault(str(item), host)
    return out


def cut_examples(events: pd.DataFrame, tc: TrainConfig) -> pd.DataFrame:
    """The loop's question asked of every training day: at a cut in the day (quantiles `rank_cuts` of its event
    times; 0 = the day's start), which items will each user take before the day ends?

    One row per (user, cut, item taken after the cut): user_id, ts (the cut), day, until (the day's last event in
    `events`: where its labels end, the day's end for a whole batch, the split cut for a train head), item_id,
    grade (3 purchase, 2 cart, 1 click; the strongest). Both stages learn from these, so they learn what the gate
    measures, not "the next event of the funnel" (a click's own cart a minute later). Candidates are the rooms live
    between the cut and `until`: a room that starts after the labels end has no labels, and counting its items as
    not taken would teach "rooms that start later are not wanted"."""
    pos = events.loc[positive_mask(events), ["user_id", "item_id", "ts", "event_type"]]
    if pos.empty:
        return pd.DataFrame(columns=["user_id", "ts", "day", "until", "item_id", "grade"])
    ts_all = pd.to_datetime(events["ts"])
    day_of = ts_all.dt.normalize()
    frames = []
    for day, times in ts_all.groupby(day_of.to_numpy()):
        in_day = pos.loc[pd.to_datetime(pos["ts"]).dt.normalize() == day]
        for q in tc.rank_cuts:
            cut = pd.Timestamp(times.quantile(q)) if q > 0 else pd.Timestamp(day)
            after = in_day.loc[pd.to_datetime(in_day["ts"]) >= cut]
            if after.empty:
                continue
            frames.append(pd.DataFrame({"user_id": after["user_id"].astype(str).to_numpy(), "ts": cut,
                                        "day": pd.Timestamp(day).date(), "until": pd.Timestamp(times.max()),
                                        "item_id": after["item_id"].astype(str).to_numpy(),
                                        "grade": after["event_type"].map(GRADES).to_numpy(np.float64)}))
    if not frames:  # positives, but none at or after any cut (rank_cuts without 0)
        return pd.DataFrame(columns=["user_id", "ts", "day", "until", "item_id", "grade"])
    out = pd.concat(frames, ignore_index=True)
    out = out.groupby(["user_id", "ts", "day", "until", "item_id"], as_index=False, sort=False)["grade"].max()
    return out.sort_values(["ts", "user_id"], kind="stable").reset_index(drop=True)


def rank_groups(data: TrainingData, tc: TrainConfig, seed: int) -> list[RankGroup]:
    """Ranking groups of the newest `rank_days` days: a user at a cut, the items live after it, what they took.

    Without rooms, the candidates are the whole catalogue (the caller samples them down)."""
    examples = cut_examples(data.label_events, tc)
    if examples.empty:
        return []
    days = sorted(set(examples["day"]))[-tc.rank_days:]
    examples = examples.loc[examples["day"].isin(set(days))]
    streams = data.tables["streams"]
    groups: list[RankGroup] = []
    for (t, day, until), at_cut in examples.groupby(["ts", "day", "until"], sort=True):
        hosts = live_after(streams, pd.Timestamp(t), pd.Timestamp(until))
        candidates = list(hosts) if hosts else data.catalogue
        col = {item: j for j, item in enumerate(candidates)}
        host_list = [hosts.get(c, "") for c in candidates]
        for user, frame in at_cut.groupby("user_id", sort=True):
            labels = np.zeros(len(candidates))
            for item, grade in zip(frame["item_id"], frame["grade"]):
                j = col.get(item)
                if j is not None:
                    labels[j] = max(labels[j], grade)
            if labels.any():
                groups.append(RankGroup(user, pd.Timestamp(t).value, day, candidates, host_list, labels))
    if len(groups) > tc.max_rank_groups:  # keep the newest groups (the validation day among them)
        groups = groups[-tc.max_rank_groups:]
    return groups


def ctr_rows(events: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The newest `max_rows` impressions of `events`: (user, time of the session's first impression, item, room,
    label).

    Label 1 when the same user took the item (click / cart / purchase) in the same room at or after the session's
    start: a take from an earlier session is already in the state the row is scored from, so counting it would teach
    "already taken" instead of "will take"."""
    imp = events.loc[events["event_type"] == "impression"]
    if imp.empty:
        return pd.DataFrame(columns=["user_id", "t", "item_id", "stream_id", "label"])
    if len(imp) > max_rows:
        imp = imp.iloc[-max_rows:]
    taken = events.loc[positive_mask(events)]
    key = lambda df: df["user_id"].astype(str) + "\x1f" + df["item_id"].astype(str) + "\x1f" + df["stream_id"].astype("string").fillna("")
    last_take = pd.to_datetime(taken["ts"]).groupby(key(taken).to_numpy()).max()
    session = imp["user_id"].astype(str) + "\x1f" + imp["stream_id"].astype("string").fillna("")
    first = pd.to_datetime(imp["ts"]).groupby(session.to_numpy()).transform("min")
    taken_after = key(imp).map(last_take).to_numpy("datetime64[ns]") >= first.to_numpy("datetime64[ns]")
    return pd.DataFrame({"user_id": imp["user_id"].astype(str).to_numpy(), "t": first.to_numpy(),
                         "item_id": imp["item_id"].astype(str).to_numpy(),
                         "stream_id": imp["stream_id"].astype("string").fillna("").astype(str).to_numpy(),
                         "label": taken_after.astype(np.float64)})
