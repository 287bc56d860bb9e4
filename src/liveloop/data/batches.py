"""Daily batches on disk: one folder per day holding one parquet file per table plus batch.json.

A batch folder is the unit that moves through the loop (incoming -> accepted | quarantine); it is never edited in place.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Iterable

import pandas as pd

from liveloop.data.schema import TABLES, conform

BATCH_META = "batch.json"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Tables = dict[str, pd.DataFrame]


def write_batch(tables: Tables, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write the four tables (conformed to the schema) and batch.json; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        conform(tables[name], name).to_parquet(out / f"{name}.parquet", index=False)
    info = {"day": out.name[:10], **(meta or {})}
    (out / BATCH_META).write_text(json.dumps(info, indent=2, default=str))
    return out


def read_batch(batch_dir: str | Path) -> Tables:
    """Read the four tables of one batch (no validation: the gate does that)."""
    d = Path(batch_dir)
    return {name: pd.read_parquet(d / f"{name}.parquet") for name in TABLES}


def batch_meta(batch_dir: str | Path) -> dict:
    p = Path(batch_dir) / BATCH_META
    return json.loads(p.read_text()) if p.exists() else {"day": Path(batch_dir).name}


def batch_day(batch_dir: str | Path) -> date:
    """The calendar day a batch covers, from its folder name (YYYY-MM-DD)."""
    name = Path(batch_dir).name[:10]
    if not _DAY.match(name):
        raise ValueError(f"batch folder {batch_dir} is not named YYYY-MM-DD")
    return date.fromisoformat(name)


def list_batches(root: str | Path) -> list[Path]:
    """Batch folders under root, oldest first (folders not named by day are ignored)."""
    r = Path(root)
    if not r.exists():
        return []
    return sorted(p for p in r.iterdir() if p.is_dir() and _DAY.match(p.name[:10]))


def concat_batches(batch_dirs: Iterable[str | Path]) -> Tables:
    """History across batches: events/users stacked; items and streams keep the latest row per id."""
    parts = [read_batch(d) for d in batch_dirs]
    if not parts:
        raise ValueError("no batches to concatenate")
    out: Tables = {}
    for name, key in (("items", "item_id"), ("streams", "stream_id"), ("users", "user_id"), ("events", "event_id")):
        frame = pd.concat([p[name] for p in parts], ignore_index=True)
        out[name] = frame.drop_duplicates(key, keep="last").reset_index(drop=True)
    return out


def split_by_time(batch_dir: str | Path, holdout_fraction: float, train_out: str | Path,
                  holdout_out: str | Path) -> tuple[Path, Path]:
    """Split one batch at a time quantile of its events: the head trains, the tail is the held-out evaluation set.

    Both halves keep the full items/streams/users tables so each stays self-contained.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    tables = read_batch(batch_dir)
    events = tables["events"].sort_values("ts", kind="stable")
    cut = events["ts"].quantile(1.0 - holdout_fraction)
    meta = batch_meta(batch_dir)
    head = {**tables, "events": events[events["ts"] <= cut]}
    tail = {**tables, "events": events[events["ts"] > cut]}
    return (write_batch(head, train_out, {**meta, "split": "train", "cut": str(cut)}),
            write_batch(tail, holdout_out, {**meta, "split": "holdout", "cut": str(cut)}))
