"""Everything the towers read is text: items as "title | category | brand | price band | live room", users as their
recent behaviour ("bought: ...; clicked: ...; said: ..."), newest first so truncation drops the oldest.

Ids (event_id, user_id, item_id) never enter the text, so they cannot change a score. Pure pandas/numpy: light to import.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from liveloop.data.schema import positive_mask

# The verb each behaviour event is rendered with; impressions are not behaviour (the user did nothing).
VERBS: dict[str, str] = {"purchase": "bought", "add_to_cart": "carted", "click": "clicked", "comment": "said"}
RETURN_VERB = "returned"  # a purchase with negative quantity (Online Retail cancellation)
PRICE_BANDS: tuple[float, ...] = (1, 3, 10, 30, 100, 300, 1000)
COMMENT_CHARS = 80
NO_HISTORY = "no history"  # how a user without events reads as text: the frozen encoder and the untrained tower
DAY = pd.Timedelta(days=1)


def price_band(price: float | None) -> str:
    """Absolute log-spaced bands, so an item's text does not change when the rest of the catalogue does."""
    if price is None or not np.isfinite(price):
        return "price unknown"
    for lo, hi in zip((0,) + PRICE_BANDS, PRICE_BANDS):
        if price < hi:
            return f"price {lo:g}-{hi:g}"
    return f"price over {PRICE_BANDS[-1]:g}"


def _latest_room(streams: pd.DataFrame | None) -> dict[str, str]:
    """item_id -> title of the latest live room that shows it."""
    if streams is None or streams.empty:
        return {}
    shown = streams[["title", "start", "item_ids"]].explode("item_ids").dropna(subset=["item_ids"])
    shown = shown.sort_values("start").drop_duplicates("item_ids", keep="last")
    return dict(zip(shown["item_ids"].astype(str), shown["title"].astype(str)))


def item_texts(items: pd.DataFrame, streams: pd.DataFrame | None = None) -> dict[str, str]:
    """item_id -> text: title, category, brand, price band, and the live room title it is shown in when known."""
    missing = [c for c in ("item_id", "title", "category", "brand", "price") if c not in items.columns]
    if missing:
        raise ValueError(f"items table is missing columns {missing}")
    rooms = _latest_room(streams)
    out: dict[str, str] = {}
    for item_id, title, category, brand, price in zip(
        items["item_id"].astype(str), items["title"], items["category"], items["brand"], items["price"]
    ):
        parts = [str(title) if pd.notna(title) else "untitled", str(category) if pd.notna(category) else ""]
        if pd.notna(brand) and str(brand):
            parts.append(str(brand))
        parts.append(price_band(None if pd.isna(price) else float(price)))
        if item_id in rooms:
            parts.append(f"live: {rooms[item_id]}")
        out[item_id] = " | ".join(p for p in parts if p)
    return out


def behaviour_fragments(events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One row per behaviour event (user_id, ts, item_id, fragment, positive), sorted by user then time.

    The fragment is the event as text ("bought: Red Mug"); `positive` marks learning positives.
    """
    missing = [c for c in ("user_id", "item_id", "ts", "event_type", "text", "quantity") if c not in events.columns]
    if missing:
        raise ValueError(f"events table is missing columns {missing}")
    ev = events[events["event_type"].isin(list(VERBS))]
    titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
    item_ids = ev["item_id"].astype("string")
    title = item_ids.map(titles).fillna("an item").astype(str)
    qty = ev["quantity"].astype("float64")
    verb = ev["event_type"].map(VERBS).astype(str)
    returned = (ev["event_type"] == "purchase") & (qty < 0)
    verb = verb.where(~returned, RETURN_VERB)
    said = ev["text"].astype("string").fillna("").str.slice(0, COMMENT_CHARS)
    fragment = np.where(ev["event_type"] == "comment", verb + ": " + said.astype(str), verb + ": " + title)
    positive = positive_mask(ev)
    out = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype(str).to_numpy(),
            "ts": pd.to_datetime(ev["ts"]).to_numpy(),
            "item_id": item_ids.fillna("").astype(str).to_numpy(),
            "fragment": fragment,
            "positive": positive.to_numpy(),
        }
    )
    return out.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)


def context_texts_at(behaviour: pd.DataFrame, user_ids, times, max_events: int) -> list[str]:
    """For each (user, time) query: the user's last `max_events` fragments strictly before that time, newest first.

    One sort plus a vectorised searchsorted over (user, time) keys, so it is O((n + q) log n), not O(n * q).
    """
    times = pd.to_datetime(pd.Series(times)).to_numpy()
    users = pd.Series(user_ids, dtype=str).to_numpy()
    if behaviour.empty:
        return [NO_HISTORY] * len(users)
    codes = {u: i for i, u in enumerate(pd.unique(behaviour["user_id"]))}
    base = behaviour["ts"].to_numpy().min()
    span = (max(behaviour["ts"].to_numpy().max(), times.max() if len(times) else base) - base) / DAY + 1.0
    key = behaviour["user_id"].map(codes).to_numpy() * span + (behaviour["ts"].to_numpy() - base) / DAY
    q_code = np.array([codes.get(u, -1) for u in users], dtype=np.int64)
    q_key = q_code * span + (times - base) / DAY
    end = np.searchsorted(key, q_key, side="left")
    start = np.searchsorted(key, q_code * span - 0.5, side="left")
    frags = behaviour["fragment"].to_numpy()
    out = []
    for code, lo, hi in zip(q_code, np.maximum(start, end - max_events), end):
        out.append("; ".join(frags[lo:hi][::-1]) if code >= 0 and hi > lo else NO_HISTORY)
    return out


def user_texts(
    events: pd.DataFrame, items: pd.DataFrame, as_of: pd.Timestamp | None = None, max_events: int = 20
) -> dict[str, str]:
    """user_id -> recent behaviour strictly before `as_of` (None: after everything) as text, newest first."""
    behaviour = behaviour_fragments(events, items)
    if as_of is None:
        ref = pd.to_datetime(events["ts"]).max() + pd.Timedelta(microseconds=1) if len(events) else pd.Timestamp(0)
        before = behaviour
    else:
        ref = pd.Timestamp(as_of)
        before = behaviour[behaviour["ts"] < ref]
    if before.empty:
        return {}
    users = pd.unique(before["user_id"])
    return dict(zip(users, context_texts_at(before, users, [ref] * len(users), max_events)))
