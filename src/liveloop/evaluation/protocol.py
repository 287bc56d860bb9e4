"""Evaluation protocols: who is evaluated, on which target items, against which candidates, as of when.

Two protocols share one `EvalSplit` so every scorer (model, baselines, oracle) sees the same users, targets and
candidates:
- `time_split`: the Online Retail protocol (cut at a time quantile of positives; target = first item a returning user
  buys after the cut; full ranking over every known item). `liveloop benchmark` runs it on any imported dataset.
- `next_window`: the loop's protocol (history batches vs. the next batch; targets = every item a user wanted in the
  test window; candidates = items live in that window's rooms when the data has rooms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from liveloop.data.batches import Tables
from liveloop.data.schema import positive_mask

SLICES: tuple[str, ...] = ("repeat", "new", "warm", "cold")


class ProtocolError(ValueError):
    """The data cannot be evaluated under the protocol (no positives, no test users, bad quantile...)."""


def positive_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events that say the user wants the item: click / add_to_cart / purchase, excluding cancellations."""
    return events.loc[positive_mask(events)]


@dataclass
class EvalSplit:
    """Everything a scorer needs, identical for every scorer of one run."""

    history: Tables  # events strictly before as_of; items and streams cover every candidate (for item texts)
    as_of: pd.Timestamp  # scorers see nothing at or after this time
    user_ids: list[str]  # evaluated users
    targets: list[list[str]]  # per user, target item ids (first occurrence order)
    candidate_ids: list[str]  # items ranked for every user
    test_events: pd.DataFrame  # all events of the test window (impressions feed the CTR AUC)
    info: dict = field(default_factory=dict)  # protocol description for the report

    def target_slices(self) -> dict[str, list[np.ndarray]]:
        """Per slice, per user, a boolean mask over that user's targets.

        repeat/new: the user had / had not wanted the item before; warm/cold: anyone had / nobody had (cold-start).
        """
        hist = positive_events(self.history["events"])
        seen_items = set(self.history["events"]["item_id"].astype(str))
        own = hist.groupby("user_id")["item_id"].agg(lambda s: set(s.astype(str))).to_dict()
        out: dict[str, list[np.ndarray]] = {name: [] for name in SLICES}
        for user, targets in zip(self.user_ids, self.targets):
            mine = own.get(user, set())
            repeat = np.array([t in mine for t in targets], dtype=bool)
            warm = np.array([t in seen_items for t in targets], dtype=bool)
            out["repeat"].append(repeat)
            out["new"].append(~repeat)
            out["warm"].append(warm)
            out["cold"].append(~warm)
        return out


def _before(tables: Tables, cut: pd.Timestamp) -> Tables:
    """History as of `cut`: events strictly before it; the whole catalogue and room list stay (for item texts)."""
    events = tables["events"].loc[tables["events"]["ts"] < cut]
    users = tables["users"].loc[tables["users"]["user_id"].isin(events["user_id"])]
    return {"items": tables["items"], "streams": tables["streams"], "users": users, "events": events}


def time_cut(events: pd.DataFrame, quantile: float) -> pd.Timestamp:
    """The time at the given quantile of positive-event timestamps."""
    if not 0.0 < quantile < 1.0:
        raise ProtocolError(f"split quantile must be strictly between 0 and 1, got {quantile}")
    positives = positive_events(events)
    if positives.empty:
        raise ProtocolError("no positive events (click / add_to_cart / purchase) to split on")
    return pd.Timestamp(positives["ts"].quantile(quantile))


def _sample_users(per_user: pd.DataFrame | pd.Series, max_users: int | None, seed: int):
    """At most max_users rows (seeded, order kept), so evaluation cost stays bounded on big data."""
    if max_users is None or len(per_user) <= max_users:
        return per_user
    keep = np.sort(np.random.default_rng(seed).choice(len(per_user), size=max_users, replace=False))
    return per_user.iloc[keep]


def time_split(tables: Tables, quantile: float, max_users: int | None = None, seed: int = 0) -> EvalSplit:
    """Online Retail protocol: returning users' first wanted item after the cut, ranked over all items."""
    cut = time_cut(tables["events"], quantile)
    positives = positive_events(tables["events"])
    returning = set(positives.loc[positives["ts"] < cut, "user_id"])
    after = positives.loc[(positives["ts"] >= cut) & positives["user_id"].isin(returning)]
    # stable sort keeps the file order inside one basket (same minute), as the published floors do
    first = after.sort_values("ts", kind="stable").drop_duplicates("user_id", keep="first")
    if first.empty:
        raise ProtocolError(f"no user has positives both before and after the cut at {cut}")
    first = _sample_users(first.sort_values("user_id"), max_users, seed)
    candidates = sorted(set(tables["items"]["item_id"].astype(str)) | set(tables["events"]["item_id"].astype(str)))
    return EvalSplit(
        history=_before(tables, cut),
        as_of=cut,
        user_ids=first["user_id"].astype(str).tolist(),
        targets=[[t] for t in first["item_id"].astype(str)],
        candidate_ids=candidates,
        test_events=tables["events"].loc[tables["events"]["ts"] >= cut],
        info={"protocol": "time_split", "quantile": quantile, "cut": str(cut), "candidates": "all items"},
    )


def live_items(streams: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """Items shown in the rooms live at some point of [start, end]: a room that ended before the window, or starts
    after it, has nothing anyone could take in it (and the service never offers it)."""
    from liveloop.training.examples import live_after  # the one definition of "live in a window" (training's too)

    return sorted(live_after(streams, start, end))


def next_window(history: Tables, test: Tables, max_users: int | None = None, seed: int = 0) -> EvalSplit:
    """Loop protocol: every item each user wanted in the test window, ranked among the items live in it.

    Without rooms in the test window (purchase logs), every known item is a candidate.
    """
    test_events = test["events"]
    if test_events.empty:
        raise ProtocolError("the test batch has no events")
    as_of = pd.Timestamp(test_events["ts"].min())
    if not history["events"].empty and history["events"]["ts"].max() >= as_of:
        raise ProtocolError(
            f"history reaches {history['events']['ts'].max()}, not before the test window starting {as_of}; "
            "pass older batches as history"
        )
    candidates = live_items(test["streams"], as_of, pd.Timestamp(test_events["ts"].max()))
    live = bool(candidates)
    if not live:
        candidates = sorted(
            set(history["items"]["item_id"].astype(str))
            | set(test["items"]["item_id"].astype(str))
            | set(history["events"]["item_id"].astype(str))
            | set(test_events["item_id"].astype(str))
        )
    wanted = positive_events(test_events).sort_values("ts", kind="stable")
    wanted = wanted.loc[wanted["item_id"].astype(str).isin(set(candidates))]
    if wanted.empty:
        raise ProtocolError("the test batch has no positive events on candidate items")
    per_user = wanted.groupby("user_id", sort=True)["item_id"].agg(lambda s: list(dict.fromkeys(s.astype(str))))
    per_user = _sample_users(per_user, max_users, seed)
    # the test batch's catalogue rows describe items new in this window (cold-start) for text-based scorers
    merged_history = dict(history)
    merged_history["items"] = (
        pd.concat([history["items"], test["items"]], ignore_index=True)
        .drop_duplicates("item_id", keep="first")
        .reset_index(drop=True)
    )
    merged_history["streams"] = (
        pd.concat([history["streams"], test["streams"]], ignore_index=True)
        .drop_duplicates("stream_id", keep="first")
        .reset_index(drop=True)
    )
    return EvalSplit(
        history=merged_history,
        as_of=as_of,
        user_ids=[str(u) for u in per_user.index],
        targets=per_user.tolist(),
        candidate_ids=candidates,
        test_events=test_events,
        info={
            "protocol": "next_window",
            "window_start": str(as_of),
            "candidates": "items live in the window's rooms" if live else "all items",
        },
    )
