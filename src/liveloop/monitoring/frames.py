"""Per-batch frames the drift checks compare: one row per event, one row per user, and text samples.

Each frame is built from one batch's own tables, so a one-day current batch is compared with one-day reference
batches stacked (never with a multi-day aggregate, which would drift by construction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from liveloop.data.batches import Tables

EVENT_COLUMNS: tuple[str, ...] = ("category", "price", "event_type", "host_id")
USER_COLUMNS: tuple[str, ...] = ("events_per_user", "session_minutes")
NUMERIC_COLUMNS: frozenset[str] = frozenset({"price", "events_per_user", "session_minutes"})
NOT_IN_ROOM = "(no room)"
REPRICE_TOLERANCE = 0.1  # a catalogue price that moved by more than 10% counts as repriced


def event_frame(tables: Tables) -> pd.DataFrame:
    """One row per event: the item's category and catalogue price, the event type, the host of the room it happened in,
    and the user and item (not monitored as columns; they link events to the history for `interest_match` and
    `repriced_share`)."""
    events, items, streams = tables["events"], tables["items"], tables["streams"]
    item_info = items.drop_duplicates("item_id", keep="last").set_index("item_id")
    hosts = streams.drop_duplicates("stream_id", keep="last").set_index("stream_id")["host_id"]
    item_ids = events["item_id"].astype(str)
    return pd.DataFrame(
        {
            "category": item_ids.map(item_info["category"]).fillna("(unknown)").astype(str).to_numpy(),
            "price": item_ids.map(item_info["price"]).astype("float64").to_numpy(),
            "event_type": events["event_type"].astype(str).to_numpy(),
            "host_id": events["stream_id"].map(hosts).fillna(NOT_IN_ROOM).astype(str).to_numpy(),
            "user_id": events["user_id"].astype(str).to_numpy(),
            "item_id": item_ids.to_numpy(),
        }
    )


def repriced_share(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    """Share of current events (on items also in the reference) whose item's catalogue price moved by more than
    REPRICE_TOLERANCE from its latest reference price. Item by item, so it is blind to the category mix of the day,
    which moves the overall price distribution on stable days too. Both frames are `event_frame`s."""
    before = reference.dropna(subset=["price"]).drop_duplicates("item_id", keep="last").set_index("item_id")["price"]
    known = current[current["item_id"].isin(before.index) & current["price"].notna()]
    if known.empty:
        return 0.0
    ratio = known["price"].to_numpy() / before.reindex(known["item_id"]).to_numpy()
    return float((np.abs(ratio - 1.0) > REPRICE_TOLERANCE).mean())


def interest_match(history: pd.DataFrame, current: pd.DataFrame) -> np.ndarray:
    """For each current event of a user seen in `history`: the share of that user's history events in the event's
    category (1 = the user stays entirely in the categories they engaged with before, 0 = a category they never touched).

    The whole-population category mix follows the daily room schedule; this per-user view does not, so it sees a shift
    of what each user wants (a seasonal shift) that the population mix hides. Both frames are `event_frame`s."""
    if history.empty or current.empty:
        return np.zeros(0)
    counts = history.groupby(["user_id", "category"]).size()
    shares = counts / counts.groupby(level="user_id").transform("sum")
    known = current[current["user_id"].isin(set(history["user_id"]))]
    keys = pd.MultiIndex.from_arrays([known["user_id"], known["category"]], names=["user_id", "category"])
    return shares.reindex(keys).fillna(0.0).to_numpy(dtype="float64")


def user_frame(events: pd.DataFrame, session_gap_minutes: float) -> pd.DataFrame:
    """One row per user of the batch: how many events, and the mean length of their sessions in minutes.

    A session ends after `session_gap_minutes` without an event (the schema has no session id).
    """
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in USER_COLUMNS})
    ev = events[["user_id", "ts"]].sort_values(["user_id", "ts"], kind="stable")
    gap = ev["ts"].diff().dt.total_seconds().div(60.0)
    new_session = (ev["user_id"] != ev["user_id"].shift()) | (gap > session_gap_minutes)
    session = new_session.cumsum()
    spans = ev.groupby(session)["ts"].agg(["min", "max"])
    minutes = (spans["max"] - spans["min"]).dt.total_seconds().div(60.0)
    session_user = ev.groupby(session)["user_id"].first()
    per_user = pd.DataFrame({"user_id": session_user, "minutes": minutes}).groupby("user_id")["minutes"].mean()
    counts = ev.groupby("user_id").size()
    return pd.DataFrame(
        {"events_per_user": counts.astype("float64"), "session_minutes": per_user.reindex(counts.index)}
    ).reset_index(drop=True)


def new_value_share(reference: pd.Series, current: pd.Series) -> float:
    """Share of current rows whose value never occurs in the reference (new categories, new hosts)."""
    if len(current) == 0:
        return 0.0
    return float((~current.isin(set(reference))).mean())


def sample_rows(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most `cap` rows, drawn without replacement (Evidently's cost grows with rows)."""
    if len(frame) <= cap:
        return frame.reset_index(drop=True)
    return frame.sample(n=cap, random_state=seed).reset_index(drop=True)


def comment_texts(events: pd.DataFrame) -> list[str]:
    """The non-empty comment (danmaku) texts of a batch."""
    said = events.loc[events["event_type"] == "comment", "text"].dropna().astype(str).str.strip()
    return said[said != ""].tolist()


def sample_list(values: list, cap: int, seed: int) -> list:
    """At most `cap` values drawn without replacement, order kept."""
    if len(values) <= cap:
        return list(values)
    keep = np.sort(np.random.default_rng(seed).choice(len(values), size=cap, replace=False))
    return [values[i] for i in keep]
