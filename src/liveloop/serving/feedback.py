"""Durable /feedback log: fsync'd append-only JSONL under ws.feedback, exported as the loop's next batch.

One writer at a time (a thread lock inside the process, an flock across processes); every append is one write()
followed by fsync, so an acknowledged event survives a crash and concurrent writers never interleave lines.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import date
from pathlib import Path

import pandas as pd

from liveloop.data.batches import concat_batches, list_batches, write_batch
from liveloop.data.schema import COLUMNS
from liveloop.workspace import Workspace

LOG_NAME = "events.jsonl"


class FeedbackError(ValueError):
    """The feedback log cannot be exported (nothing for that day, or it references unknown items)."""


def log_path(ws: Workspace) -> Path:
    return ws.feedback / LOG_NAME


class FeedbackLog:
    """Appends records ({"kind": "event" | "item", ...}) to the log; safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, records: list[dict]) -> None:
        """Write all records in one fsync'd append; returns only once they are on disk."""
        if not records:
            return
        payload = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in records).encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                written = 0
                while written < len(payload):
                    written += os.write(fd, payload[written:])
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the flock


def read_log(path: Path) -> list[dict]:
    """Every complete record in the log; a torn last line (crash mid-write, never acknowledged) is skipped."""
    if not path.exists():
        return []
    records = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise FeedbackError(f"{path}: line {number} is not valid JSON") from None
    return records


def export_feedback(ws: Workspace, day: date | str) -> Path:
    """Write the feedback events of `day` as a self-contained batch in ws.incoming/<day>-feedback; returns it.

    Items and streams come from the accepted batches plus items upserted through /items, so the batch passes the
    same referential checks as any other batch.
    """
    day = date.fromisoformat(day) if isinstance(day, str) else day
    records = read_log(log_path(ws))
    events = pd.DataFrame([r for r in records if r.get("kind") == "event"], columns=["kind", *COLUMNS["events"]])
    if not events.empty:
        events["ts"] = pd.to_datetime(events["ts"])
        events = events[events["ts"].dt.date == day]
    if events.empty:
        raise FeedbackError(f"no feedback events on {day} in {log_path(ws)}")
    events = events.drop(columns="kind").drop_duplicates("event_id")

    accepted = list_batches(ws.accepted)
    history = concat_batches(accepted) if accepted else None
    items = history["items"] if history else pd.DataFrame(columns=list(COLUMNS["items"]))
    streams = history["streams"] if history else pd.DataFrame(columns=list(COLUMNS["streams"]))
    upserts = pd.DataFrame([r for r in records if r.get("kind") == "item"], columns=["kind", *COLUMNS["items"], "stream_id"])
    if not upserts.empty:
        upserts["first_seen"] = pd.to_datetime(upserts["first_seen"])
        upserted = upserts[list(COLUMNS["items"])]
        items = pd.concat([items, upserted.astype(items.dtypes.to_dict())], ignore_index=True) if len(items) else upserted
        items = items.drop_duplicates("item_id", keep="last")
        streams = _attach_items(streams, upserts.dropna(subset=["stream_id"]))

    missing = sorted(set(events["item_id"]) - set(items["item_id"]))
    if missing:
        raise FeedbackError(f"feedback events reference items missing from the catalog: {missing[:10]}")
    stream_ids = set(events["stream_id"].dropna())
    streams = streams[streams["stream_id"].isin(stream_ids)]
    shown = {i for ids in streams["item_ids"] for i in ids}
    items = items[items["item_id"].isin(set(events["item_id"]) | shown)]
    users = pd.DataFrame({"user_id": sorted(events["user_id"].unique()), "profile": None})
    tables = {"items": items, "streams": streams, "users": users, "events": events.sort_values("ts")}
    return write_batch(tables, ws.incoming / f"{day}-feedback", meta={"source": "feedback", "events": len(events)})


def _attach_items(streams: pd.DataFrame, upserts: pd.DataFrame) -> pd.DataFrame:
    """Add upserted items to the item list of the room they were put in."""
    if upserts.empty or streams.empty:
        return streams
    added = upserts.groupby("stream_id")["item_id"].apply(list).to_dict()
    streams = streams.copy()
    streams["item_ids"] = [
        list(dict.fromkeys([*ids, *added.get(sid, [])])) for sid, ids in zip(streams["stream_id"], streams["item_ids"])
    ]
    return streams
