"""A small valid batch and a corpus of ways real batches go wrong, for testing the validation gate.

Each corruption changes one thing in a freshly written good batch and names the words the gate must use for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from liveloop.data.batches import write_batch

DAY = "2026-01-05"
_T0 = pd.Timestamp(DAY)
N_EVENTS = 12


def good_tables() -> dict[str, pd.DataFrame]:
    """Four small tables that satisfy the whole contract (cancellation and a comment included)."""
    items = pd.DataFrame({
        "item_id": ["i1", "i2"], "title": ["Red mug", "Blue hat"], "description": ["stoneware mug", None],
        "category": ["home", "fashion"], "brand": [None, "acme"], "price": [9.5, 20.0], "first_seen": [_T0, _T0],
    })
    streams = pd.DataFrame({
        "stream_id": ["s1"], "host_id": ["h1"], "title": ["Morning deals"], "category": ["home"],
        "start": [_T0 + pd.Timedelta(hours=8)], "end": [_T0 + pd.Timedelta(hours=10)], "item_ids": [["i1", "i2"]],
    })
    users = pd.DataFrame({"user_id": ["u1", "u2"], "profile": ["likes mugs", None]})
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(N_EVENTS)],
        "ts": [_T0 + pd.Timedelta(hours=8, minutes=i) for i in range(N_EVENTS)],
        "user_id": ["u1", "u2"] * 6,
        "item_id": ["i1", "i2", "i1"] * 4,
        "stream_id": ["s1", None] * 6,
        "event_type": ["impression", "click", "add_to_cart", "purchase", "comment", "click"] * 2,
        "text": [None, None, None, None, "love this mug!", None] * 2,
        "quantity": [None, None, 1.0, -1.0, None, None] * 2,  # -1: a cancellation, allowed
        "price": [None, None, 9.5, 9.5, None, None] * 2,
    })
    return {"items": items, "streams": streams, "users": users, "events": events}


def write_good_batch(root: Path, name: str = DAY) -> Path:
    return write_batch(good_tables(), root / name)


def _edit(table: str, change: Callable[[pd.DataFrame], None]) -> Callable[[Path], Path]:
    """Rewrite one table with pandas after applying change (bypassing conform, as a broken producer would)."""

    def corrupt(batch: Path) -> Path:
        df = pd.read_parquet(batch / f"{table}.parquet")
        change(df)
        df.to_parquet(batch / f"{table}.parquet", index=False)
        return batch

    return corrupt


def set_cell(table: str, column: str, row: int, value) -> Callable[[Path], Path]:
    def change(df: pd.DataFrame) -> None:
        df[column] = df[column].astype(object)
        df.at[row, column] = value

    return _edit(table, change)


def _write_bytes(table: str, data: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def corrupt(batch: Path) -> Path:
        path = batch / f"{table}.parquet"
        path.write_bytes(data(path.read_bytes()))
        return batch

    return corrupt


def _latin1_text(batch: Path) -> Path:
    """users.profile written as raw latin-1 bytes (a binary parquet column), as a mis-encoded export would."""
    df = pd.read_parquet(batch / "users.parquet")
    profiles = pa.array([None if pd.isna(p) else p.replace("mugs", "cafés").encode("latin-1") for p in df.profile],
                        type=pa.binary())
    table = pa.table({"user_id": pa.array(df.user_id.astype(str)), "profile": profiles})
    pq.write_table(table, batch / "users.parquet")
    return batch


def _rename(new_name: str) -> Callable[[Path], Path]:
    def corrupt(batch: Path) -> Path:
        return batch.rename(batch.with_name(new_name))

    return corrupt


def _remove(table: str) -> Callable[[Path], Path]:
    def corrupt(batch: Path) -> Path:
        (batch / f"{table}.parquet").unlink()
        return batch

    return corrupt


def _write_meta(text: bytes) -> Callable[[Path], Path]:
    def corrupt(batch: Path) -> Path:
        (batch / "batch.json").write_bytes(text)
        return batch

    return corrupt


@dataclass
class Corruption:
    kind: str
    apply: Callable[[Path], Path]  # corrupts a good batch in place; returns the (possibly renamed) folder
    expect: list[str]  # words the gate's failure messages must contain
    cfg: dict = field(default_factory=dict)  # ValidateConfig overrides
    now: str | None = None  # validation clock, when the check depends on it


def _drop_column(table: str, column: str):
    return _edit(table, lambda df: df.drop(columns=[column], inplace=True))


def _duplicate_first_event_id(df: pd.DataFrame) -> None:
    df.loc[1, "event_id"] = df.loc[0, "event_id"]


CORPUS: list[Corruption] = [
    Corruption("missing column", _drop_column("events", "price"), ["events", "missing required columns", "price"]),
    Corruption("wrong dtype", _edit("events", lambda df: df.__setitem__("price", df.price.astype(str))),
               ["events.price", "should hold float64"]),
    Corruption("timezone-aware timestamps",
               _edit("events", lambda df: df.__setitem__("ts", df.ts.dt.tz_localize("UTC"))),
               ["events.ts", "should hold datetime64[ns]", "UTC"]),
    Corruption("null event id", set_cell("events", "event_id", 3, None), ["events.event_id", "1 of 12 rows are null"]),
    Corruption("null item id", set_cell("items", "item_id", 0, None), ["items.item_id", "are null"]),
    Corruption("duplicate event ids", _edit("events", _duplicate_first_event_id),
               ["events.event_id", "repeat an id", "'e0'"]),
    Corruption("unknown event type", set_cell("events", "event_type", 2, "bought"),
               ["events.event_type", "outside impression/click/add_to_cart/purchase/comment", "'bought'"]),
    Corruption("negative item price", set_cell("items", "price", 1, -20.0), ["items.price", "not > 0", "(e.g. -20.0)"]),
    Corruption("zero event price", set_cell("events", "price", 2, 0.0), ["events.price", "not > 0"]),
    Corruption("timestamp outside the day", set_cell("events", "ts", 5, pd.Timestamp("2026-01-07 09:00")),
               ["events.ts", "outside the batch day 2026-01-05", "2026-01-07"]),
    Corruption("timestamp in the future", set_cell("events", "ts", 5, pd.Timestamp("2026-01-05 23:00")),
               ["events.ts", "in the future"], now="2026-01-05T12:00:00"),
    Corruption("comment without text", set_cell("events", "text", 4, None),
               ["events.text", "1 of 2 rows (comment events) have no text"]),
    Corruption("empty comment text", set_cell("events", "text", 4, ""), ["events.text", "empty or longer than"]),
    Corruption("over-long text", set_cell("events", "text", 4, "so good " * 20),
               ["events.text", "longer than 50 characters"], cfg={"max_text_length": 50}),
    Corruption("unknown item", set_cell("events", "item_id", 0, "i999"), ["events.item_id", "items missing", "'i999'"]),
    Corruption("unknown stream", set_cell("events", "stream_id", 0, "s404"),
               ["events.stream_id", "streams missing", "'s404'"]),
    Corruption("unknown user", set_cell("events", "user_id", 0, "ghost"),
               ["events.user_id", "users missing", "'ghost'"]),
    Corruption("stream ends before it starts", set_cell("streams", "end", 0, pd.Timestamp("2026-01-05 07:00")),
               ["streams.end/start", "end before they start"]),
    Corruption("item first seen after the day", set_cell("items", "first_seen", 0, pd.Timestamp("2026-01-09")),
               ["items.first_seen", "first seen after the batch day"]),
    Corruption("too few events", _edit("events", lambda df: df.drop(index=range(3, N_EVENTS), inplace=True)),
               ["events", "has 3 rows", "between 10 and"]),
    Corruption("empty parquet file", _write_bytes("events", lambda _: b""), ["events.parquet", "empty (0 bytes)"]),
    Corruption("truncated parquet", _write_bytes("items", lambda b: b[: len(b) // 2]),
               ["items.parquet", "cannot be read as parquet"]),
    Corruption("csv renamed .parquet", _write_bytes("users", lambda _: b"user_id,profile\nu1,likes mugs\n"),
               ["users.parquet", "cannot be read as parquet"]),
    Corruption("garbage bytes", _write_bytes("streams", lambda _: bytes(range(256)) * 8),
               ["streams.parquet", "cannot be read"]),
    Corruption("missing table file", _remove("users"), ["users.parquet", "file is missing"]),
    Corruption("text not utf-8", _latin1_text, ["users.profile", "not valid UTF-8"]),
    Corruption("folder name not a date", _rename("latest"), ["'latest'", "not a date"]),
    Corruption("batch.json names another day", _write_meta(b'{"day": "2026-02-01"}'),
               ["batch.json says day 2026-02-01"]),
    Corruption("batch.json wrong encoding", _write_meta('{"day": "2026-01-05"}'.encode("utf-16")),
               ["batch.json cannot be read"]),
]
