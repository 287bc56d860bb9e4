"""The four tables every batch holds, whatever its source (simulator, Online Retail, a user's own log).

Ids are strings everywhere (Online Retail stock codes are not numbers). Timestamps are tz-naive UTC.
docs/data.md explains each field; expectations/*.json is the enforced contract.
"""

from __future__ import annotations

import pandas as pd

TABLES: tuple[str, ...] = ("items", "streams", "users", "events")

EVENT_TYPES: tuple[str, ...] = ("impression", "click", "add_to_cart", "purchase", "comment")

# Events that say the user wants the item; used as positives for retrieval and as "history" text.
POSITIVE_EVENT_TYPES: tuple[str, ...] = ("click", "add_to_cart", "purchase")

COLUMNS: dict[str, dict[str, str]] = {
    "items": {
        "item_id": "string",
        "title": "string",
        "description": "string",
        "category": "string",
        "brand": "string",
        "price": "float64",
        "first_seen": "datetime64[ns]",
    },
    "streams": {
        "stream_id": "string",
        "host_id": "string",
        "title": "string",
        "category": "string",
        "start": "datetime64[ns]",
        "end": "datetime64[ns]",
        "item_ids": "object",  # list of item_id strings shown in the room
    },
    "users": {
        "user_id": "string",
        "profile": "string",  # optional free text, may be null
    },
    "events": {
        "event_id": "string",
        "ts": "datetime64[ns]",
        "user_id": "string",
        "item_id": "string",
        "stream_id": "string",  # null when the event did not happen in a live room
        "event_type": "string",
        "text": "string",  # comment text (danmaku); null for other types
        "quantity": "float64",  # units for add_to_cart / purchase; negative = cancellation
        "price": "float64",  # unit price paid, where relevant
    },
}

NULLABLE: dict[str, set[str]] = {
    "items": {"description", "brand", "price"},  # price unknown in some imported catalogues
    "streams": set(),
    "users": {"profile"},
    "events": {"stream_id", "text", "quantity", "price"},
}


def empty(table: str) -> pd.DataFrame:
    """An empty frame with the table's columns and dtypes."""
    return conform(pd.DataFrame({c: [] for c in COLUMNS[table]}), table)


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return df with exactly the table's columns, in order, cast to the schema dtypes.

    Raises KeyError naming the missing columns; used by producers (simulator, importers), not by validation,
    which must report bad input instead of fixing it.
    """
    spec = COLUMNS[table]
    missing = [c for c in spec if c not in df.columns]
    if missing:
        raise KeyError(f"{table}: missing columns {missing}")
    out = df[list(spec)].copy()
    for col, dtype in spec.items():
        if dtype == "object":
            continue
        if dtype.startswith("datetime"):
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
        else:
            out[col] = out[col].astype(dtype)
    return out.reset_index(drop=True)


def positive_mask(events: pd.DataFrame) -> pd.Series:
    """The one rule for "the user wants this item": click / add_to_cart / purchase whose quantity is null or > 0
    (cancellations are purchases with negative quantity). Training, evaluation, text rendering and serving share it."""
    return events["event_type"].isin(POSITIVE_EVENT_TYPES) & ~(events["quantity"].astype("float64") <= 0)
