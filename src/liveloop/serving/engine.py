"""What the service does, as plain code: load a packaged model into a serving state, recommend, score,
take feedback and item upserts. The BentoML class (service.py) only maps HTTP onto these, so the same code runs
in-process for tests and benchmarks.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import ServeConfig
from liveloop.data.schema import COLUMNS, EVENT_TYPES
from liveloop.serving.batching import EncodeBatcher
from liveloop.serving.feedback import FeedbackLog
from liveloop.serving.gpu import apply_serve_precision
from liveloop.serving.index import CatalogError, ItemIndex, resolve_now
from liveloop.serving.package import (HISTORY_FILE, INDEX_FILE, ITEMS_FILE, MODEL_DIR, PACKAGE_FILE, ROOMS_FILE,
                                      STREAMS_FILE)
from liveloop.serving.state import Profile, UserStates, build_profile
REASON_VERBS = {"bought": "bought", "carted": "added to cart", "clicked": "clicked"}
COLD_REASON = "picked for new viewers from the rooms live now"
GENERIC_REASON = "matches your recent activity"  # the user only commented: nothing to point at


class RequestError(ValueError):
    """A request that names something wrong (unknown item/stream, too many rows); becomes a 4xx."""


@dataclass
class ServingState:
    tag: str
    meta: dict
    model: object  # liveloop.model.recommender.Recommender
    index: ItemIndex
    users: UserStates
    batcher: EncodeBatcher
    serve: ServeConfig
    item_base: dict  # item_id -> frozen text vector (the user tower's vocabulary), grows with /items
    host_of: dict  # stream_id -> host_id of every known room
    popularity: object  # liveloop.model.ranker.Popularity: positives over time, grows with /feedback
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    _scorer: tuple | None = None  # (index it was built for, CatalogueScorer)
    _hosts: tuple | None = None  # (index it was built for, host of the live room showing each row)

    @property
    def version(self) -> str:
        return self.meta.get("model_version") or self.tag

    def scorer(self):
        """The model bound to the current catalogue snapshot (rebuilt when /items swaps in a new index)."""
        from liveloop.model.ranker import ItemTable
        from liveloop.model.scoring import CatalogueScorer

        index, cached = self.index, self._scorer
        if cached is not None and cached[0] is index:
            return cached[1]
        ids = [str(i) for i in index.item_ids]
        base = np.stack([self.item_base[i] for i in ids]) if ids else np.zeros((0, index.dim), np.float32)
        table = ItemTable.build(index.items.reset_index(drop=True), ids, base, index.vectors,
                                self.model.stats.get("repeat_share", {}))
        scorer = CatalogueScorer(self.model, table, self.popularity)
        self._scorer = (index, scorer)
        return scorer

    def live_hosts(self, rows: np.ndarray) -> np.ndarray:
        """Host of the room showing each item row now ("" when none); computed once per catalogue snapshot (per
        request it was half of /recommend's time at 2k live items)."""
        index, cached = self.index, self._hosts
        if cached is None or cached[0] is not index:
            live = index.streams.loc[index.streams["stream_id"].isin(index.live_streams)]
            host = {}
            for h, ids in zip(live["host_id"].astype(str), live["item_ids"]):
                for i in ids:
                    host.setdefault(str(i), h)
            cached = (index, np.array([host.get(str(i), "") for i in index.item_ids], dtype=object))
            self._hosts = cached
        return cached[1][rows]


def load_state(model_path: str | Path, tag: str, serve: ServeConfig, device: str = "auto") -> ServingState:
    """Everything for one packaged model: recommender, item index at "now", user histories, encode batcher."""
    from safetensors.numpy import load_file

    from liveloop.model.history import Histories
    from liveloop.model.ranker import Popularity
    from liveloop.model.recommender import Recommender

    path = Path(model_path)
    model = Recommender.load(path / MODEL_DIR, device=device)
    apply_serve_precision(model, serve.gpu)  # serve.gpu: bf16 towers on cuda
    arrays = load_file(str(path / INDEX_FILE))
    items = pd.read_parquet(path / ITEMS_FILE)
    streams = pd.read_parquet(path / STREAMS_FILE)
    streams["item_ids"] = streams["item_ids"].map(list)
    index = ItemIndex.build(items, arrays["item_vectors"], streams, resolve_now(serve.now, streams), serve.ann_threshold)
    rooms = pd.read_parquet(path / ROOMS_FILE)
    host_of = dict(zip(rooms["stream_id"].astype(str), rooms["host_id"].astype(str)))
    host_of.update(zip(streams["stream_id"].astype(str), streams["host_id"].astype(str)))
    history = pd.read_parquet(path / HISTORY_FILE)
    users = UserStates(history, model.config.history_window, serve.history_keep_events)
    popularity = Popularity.from_histories(Histories.from_events(history, None))
    item_base = dict(zip(items["item_id"].astype(str), arrays["item_base"]))
    state = ServingState(tag, json.loads((path / PACKAGE_FILE).read_text()), model, index, users, None, serve,
                         item_base, host_of, popularity)
    state.batcher = EncodeBatcher(lambda states: state.scorer().user_vectors(states), serve.max_batch_rows)
    return state


# ----- requests ---------------------------------------------------------------------------------------------------
def event_records(state: ServingState, events: list[dict], default_user: str | None = None) -> list[dict]:
    """Request events -> event records (schema columns): ids assigned, ts defaulted to now, references checked.

    Plain dicts, no DataFrame: this runs on every /recommend that carries recent events.
    """
    index = state.index
    records = []
    for event in events:
        record = {column: event.get(column) for column in COLUMNS["events"]}
        if default_user is not None:
            record["user_id"] = default_user
        if not record["event_id"]:
            record["event_id"] = uuid.uuid4().hex
        record["ts"] = parse_ts(record["ts"], index.now)
        records.append(record)
    bad_types = sorted({r["event_type"] for r in records} - set(EVENT_TYPES))
    if bad_types:
        raise RequestError(f"unknown event_type(s) {bad_types}; expected one of {list(EVENT_TYPES)}")
    try:
        index.rows([r["item_id"] for r in records])
    except CatalogError as exc:
        raise RequestError(str(exc)) from None
    unknown_streams = sorted({r["stream_id"] for r in records if r["stream_id"] is not None} - index.stream_ids)
    if unknown_streams:
        raise RequestError(f"unknown stream_id(s) {unknown_streams[:10]}")
    return records


def parse_ts(value, default: pd.Timestamp) -> pd.Timestamp:
    """An event time as tz-naive UTC; missing means now."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return pd.Timestamp(default)
    try:
        ts = pd.Timestamp(value)
        ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
        return ts.as_unit("ns")  # what the feedback log and the next batch hold
    except (ValueError, TypeError):  # OutOfBoundsDatetime is a ValueError
        raise RequestError(f"ts {value!r} is not an ISO 8601 time between 1677 and 2262") from None


async def user_profile(state: ServingState, user_id: str, recent: list[dict] | None):
    """(profile or None, vector): cached, from stored behaviour plus request events; no behaviour -> the model's
    vector for a user without events (`Recommender.cold_vector`, what training and evaluation give them)."""
    index = state.index
    if recent is not None:
        events = state.users.events(user_id) + recent
        profile = build_profile(events, state.host_of, index.now, state.users.window)
    else:
        cached = state.users.cached(user_id)
        if cached is not None:
            return cached
        profile, generation = state.users.profile(user_id, state.host_of, index.now)
        if profile is not None:
            vector = (await state.batcher.encode([profile.state]))[0]
            state.users.remember(user_id, profile, vector, generation)
            return profile, vector
    if profile is None:
        return None, state.model.cold_vector()
    return profile, (await state.batcher.encode([profile.state]))[0]


async def recommend(state: ServingState, user_id: str, k: int, stream_id: str | None = None,
                    recent_events: list[dict] | None = None) -> dict:
    """Top-k available items for a user, each with a score and a short reason. A viewer the service has never seen
    is ranked by the model from its no-history vector, as training and evaluation rank them (one cold path)."""
    if k > state.serve.max_k:
        raise RequestError(f"k must be at most {state.serve.max_k}, got {k}")
    index = state.index
    try:
        within = index.stream_rows(stream_id) if stream_id is not None else None
    except CatalogError as exc:
        raise RequestError(str(exc)) from None
    recent = event_records(state, recent_events, default_user=user_id) if recent_events else None
    profile, vector = await user_profile(state, user_id, recent)
    items = rank(state, index, profile, vector, k, within)  # inline: ~4-8 ms at 10k live items (bench/serve.py)
    return {"user_id": user_id, "cold_start": not state.users.known(user_id), "model_version": state.version,
            "items": items}


def rank(state: ServingState, index: ItemIndex, profile: Profile | None, vector: np.ndarray, k: int,
         within: np.ndarray | None) -> list[dict]:
    """The candidates evaluation ranks, ranked the same way: the best `model.rank_candidates` by retrieval plus the
    user's own available items, ordered by `CatalogueScorer.scores` (which keeps its own items and the best by
    retrieval up to that limit, as it does over a whole catalogue)."""
    from liveloop.model.history import EMPTY_STATE

    rows, _ = index.top(vector, max(k, state.model.config.rank_candidates), within)
    history = [i for i in (profile.state.item_counts if profile else {}) if i in index.row_of]
    if history:
        hist_rows = index.rows(history)
        allowed = index.available[hist_rows] if within is None else np.isin(hist_rows, within)
        rows = np.unique(np.concatenate([rows, hist_rows[allowed]]))
    if len(rows) == 0:
        return []
    ids = index.item_ids[rows]
    user_state = profile.state if profile else EMPTY_STATE
    scores = state.scorer().scores(user_state, vector, rows, state.live_hosts(rows), index.now.value)
    order = np.argsort(-scores, kind="stable")[:k]
    reasons = explain(index, profile, rows[order])
    return [{"item_id": ids[o], "title": index.titles[ids[o]], "score": float(scores[o]), "reason": r}
            for o, r in zip(order, reasons)]


def explain(index: ItemIndex, profile: Profile | None, rows: np.ndarray) -> list[str]:
    """'because you bought X' with X the most similar item the user engaged with; repeats say so."""
    history = [i for i in (profile.verbs if profile else {}) if i in index.row_of]
    if not history:
        return [GENERIC_REASON if profile else COLD_REASON] * len(rows)
    hist_rows = index.rows(history)
    nearest = (index.vectors[rows] @ index.vectors[hist_rows].T).argmax(axis=1)
    out = []
    for item_id, near in zip(index.item_ids[rows], nearest):
        if item_id in profile.verbs:
            out.append(f"you {REASON_VERBS[profile.verbs[item_id]]} this before")
        else:
            out.append(f"because you {REASON_VERBS[profile.verbs[history[near]]]} {index.titles[history[near]]}")
    return out


async def score(state: ServingState, user_id: str, item_ids: list[str]) -> dict:
    """CTR probabilities for (user, item) pairs from the CTR head."""
    if len(item_ids) > state.serve.max_item_ids:
        raise RequestError(f"at most {state.serve.max_item_ids} item_ids per request, got {len(item_ids)}")
    index = state.index
    try:
        rows = index.rows(item_ids)
    except CatalogError as exc:
        raise RequestError(str(exc)) from None
    from liveloop.model.history import EMPTY_STATE

    profile, vector = await user_profile(state, user_id, None)
    probs = state.scorer().ctr(profile.state if profile else EMPTY_STATE, vector, rows, state.live_hosts(rows),
                               index.now.value)
    return {"user_id": user_id, "model_version": state.version,
            "scores": [{"item_id": i, "ctr": float(p)} for i, p in zip(item_ids, probs)]}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts: missing values as null (never NaN), times as ISO strings."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return out.astype(object).where(out.notna(), None).to_dict("records")


def add_feedback(state: ServingState, log: FeedbackLog, events: list[dict]) -> dict:
    """Durably log events (fsync before returning), then update the users' in-memory state."""
    if len(events) > state.serve.max_events_per_request:
        raise RequestError(f"at most {state.serve.max_events_per_request} events per request, got {len(events)}")
    frame = pd.DataFrame(event_records(state, events), columns=list(COLUMNS["events"]))
    frame["ts"] = frame["ts"].astype("datetime64[ns]")
    log.append([{"kind": "event", **r} for r in json_records(frame)])
    with state.write_lock:
        take_behaviour(state, frame)
    return {"accepted": len(frame), "event_ids": list(frame["event_id"])}


def take_behaviour(state: ServingState, frame: pd.DataFrame) -> None:
    """New events into the user store and the popularity the ranker reads (duplicates by event_id ignored)."""
    from liveloop.data.schema import positive_mask

    fresh = state.users.add(frame)
    added = fresh.loc[positive_mask(fresh)]
    if len(added):
        state.popularity.add(added["item_id"].astype(str).to_numpy(),
                             pd.to_datetime(added["ts"]).to_numpy("datetime64[ns]").astype(np.int64))


def upsert_items(state: ServingState, log: FeedbackLog | None, items: list[dict]) -> dict:
    """Embed new/changed products at once and swap in a catalog where they are recommendable (cold start by text)."""
    from liveloop.model.text import item_texts

    if len(items) > state.serve.max_events_per_request:
        raise RequestError(f"at most {state.serve.max_events_per_request} items per request, got {len(items)}")
    frame = pd.DataFrame(items).reindex(columns=[*COLUMNS["items"], "stream_id", "available"])
    frame["available"] = [a is not False for a in frame["available"]]
    frame["first_seen"] = [parse_ts(t, state.index.now) for t in frame["first_seen"]]
    unknown = sorted(set(frame["stream_id"].dropna()) - state.index.stream_ids)
    if unknown:
        raise RequestError(f"unknown stream_id(s) {unknown[:10]}")
    with state.write_lock:
        index = state.index
        shown_in = index.streams.set_index("stream_id")["title"].to_dict()
        rooms = pd.DataFrame({"title": [shown_in[s] for s in frame["stream_id"].dropna()], "start": index.now,
                              "item_ids": [[i] for i in frame.loc[frame["stream_id"].notna(), "item_id"]]})
        texts = item_texts(frame, rooms)
        base = state.model.base_vectors([texts[i] for i in frame["item_id"]])
        vectors = state.model.item_vectors(base)
        links = frame.dropna(subset=["stream_id"]).groupby("stream_id")["item_id"].apply(list).to_dict()
        availability = dict(zip(frame["item_id"], frame["available"]))
        new_index = index.with_items(frame, vectors, availability, links)  # everything that can fail, before the log
        if log is not None:
            log.append([{"kind": "item", **r} for r in json_records(frame[[*COLUMNS["items"], "stream_id"]])])
        state.item_base = {**state.item_base, **dict(zip(frame["item_id"].astype(str), base))}
        state.index = new_index
    return {"upserted": len(frame), "live_items": state.index.n_live}
