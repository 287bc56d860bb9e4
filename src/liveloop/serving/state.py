"""Per-user serving state: recent behaviour, cached user-tower vectors, live popularity for cold start.

A user's cached (profile, vector) is dropped the moment feedback for that user arrives, so the next /recommend
re-encodes the new behaviour. One lock guards the dicts; encoding happens outside it. The user's state is computed
by liveloop.model.history, the same code training and evaluation use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from liveloop.data.schema import POSITIVE_EVENT_TYPES
from liveloop.model.history import TYPE_CODES, Histories, UserState

BEHAVIOUR_COLUMNS = ["event_id", "ts", "user_id", "item_id", "stream_id", "event_type", "text", "quantity", "price"]
VERB = {"purchase": "bought", "add_to_cart": "carted", "click": "clicked"}


def behaviour_events(events: pd.DataFrame) -> pd.DataFrame:
    """Only the events that shape a user's state (clicks, carts, purchases, comments)."""
    return events.loc[events["event_type"].isin(list(TYPE_CODES)), BEHAVIOUR_COLUMNS]


@dataclass
class Profile:
    state: UserState  # what the user tower and the ranker read
    verbs: dict[str, str]  # item_id -> how the user last engaged with it ("bought"), for reasons


def build_profile(events: list[dict], host_of: Mapping[str, str], now: pd.Timestamp, window: int) -> Profile | None:
    """One user's profile from their behaviour records: the model's UserState just after max(now, newest event)."""
    behaviour = [e for e in events if e["event_type"] in TYPE_CODES]
    if not behaviour:
        return None
    hist = Histories.from_records(behaviour, dict(host_of))
    newest = max(pd.Timestamp(e["ts"]) for e in behaviour)
    t = max(pd.Timestamp(now), newest).value + 1  # every given event counts, also ones stamped after the clock
    user = str(behaviour[0]["user_id"])
    verbs: dict[str, str] = {}
    for e in sorted(behaviour, key=lambda e: pd.Timestamp(e["ts"])):
        quantity = e.get("quantity")
        returned = quantity is not None and quantity == quantity and quantity < 0
        if e["event_type"] in POSITIVE_EVENT_TYPES and not returned:
            verbs[str(e["item_id"])] = VERB[e["event_type"]]
    return Profile(hist.state_at(user, t, window), verbs)


class UserStates:
    def __init__(self, history: pd.DataFrame, window: int, keep: int):
        self.window = window
        self._keep = keep
        self._lock = threading.Lock()
        self._events: dict[str, list[dict]] = {}
        history = behaviour_events(history).sort_values("ts")
        for user_id, frame in history.groupby("user_id", sort=False):
            self._events[str(user_id)] = frame.tail(self._keep).to_dict("records")
        self._seen = {e["event_id"] for evs in self._events.values() for e in evs}
        self._cache: dict[str, tuple[Profile, np.ndarray]] = {}
        self._versions: dict[str, int] = {}  # bumped on every feedback for the user

    def known(self, user_id: str) -> bool:
        return user_id in self._events

    def events(self, user_id: str) -> list[dict]:
        """The user's stored behaviour records, oldest first (empty for an unknown user)."""
        with self._lock:
            return list(self._events.get(user_id, ()))

    def cached(self, user_id: str) -> tuple[Profile, np.ndarray] | None:
        return self._cache.get(user_id)

    def profile(self, user_id: str, host_of: Mapping[str, str], now: pd.Timestamp) -> tuple[Profile | None, int]:
        """(profile from the stored behaviour, generation token for `remember`); None for a user without any."""
        with self._lock:
            events = list(self._events.get(user_id, ()))
            generation = self._versions.get(user_id, 0)
        return build_profile(events, host_of, now, self.window), generation

    def remember(self, user_id: str, profile: Profile, vector: np.ndarray, generation: int) -> None:
        """Cache a user's vector unless feedback arrived while it was being encoded."""
        with self._lock:
            if self._versions.get(user_id, 0) == generation:
                self._cache[user_id] = (profile, vector)

    def add(self, events: pd.DataFrame, from_feedback: bool = True) -> pd.DataFrame:
        """Append new behaviour (duplicates by event_id ignored), invalidate those users' vectors; returns the new rows."""
        with self._lock:
            fresh = events[~events["event_id"].isin(self._seen)].drop_duplicates("event_id")
            self._seen.update(fresh["event_id"])
            for record in behaviour_events(fresh).sort_values("ts").to_dict("records"):
                record["feedback"] = from_feedback
                user_events = self._events.setdefault(record["user_id"], [])
                user_events.append(record)
                del user_events[: max(0, len(user_events) - self._keep)]
                self._cache.pop(record["user_id"], None)
                self._versions[record["user_id"]] = self._versions.get(record["user_id"], 0) + 1
        return fresh

    def feedback_events(self) -> pd.DataFrame:
        """Behaviour that arrived through /feedback (carried into the state built for a reloaded model)."""
        with self._lock:
            rows = [e for evs in self._events.values() for e in evs if e.get("feedback")]
        return pd.DataFrame(rows, columns=BEHAVIOUR_COLUMNS)
