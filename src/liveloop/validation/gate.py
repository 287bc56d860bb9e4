"""The validation gate: check a batch folder against the data contract, then move it to accepted/ or quarantine/.

Checks GX cannot express live here as small python checks: whether each file can be read at all, and whether the
folder and batch.json name a valid day (needed to compute the GX parameters). Everything about table contents is in
expectations/*.json. Nothing is deleted or overwritten: a batch moves as a whole, under a fresh name if needed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from liveloop.config import ValidateConfig
from liveloop.data.batches import BATCH_META, batch_day
from liveloop.data.schema import TABLES
from liveloop.validation.gx_adapter import run_suites
from liveloop.validation.limits import EARLIEST, LATEST, MAX_PRICE, MAX_QUANTITY
from liveloop.validation.report import ValidationReport, unused_path

ALREADY_ACCEPTED = "a batch for this day was already accepted"
_REFERENCES = {"known_item_ids": ("items", "item_id"), "known_stream_ids": ("streams", "stream_id"),
               "known_user_ids": ("users", "user_id")}


class BatchInputError(ValueError):
    """The gate was pointed at something that is not a batch folder it can judge (a user error, not bad data)."""


@dataclass
class GateResult:
    accepted: bool
    dest: Path
    report: ValidationReport


def validate_batch(batch_dir: Path, cfg: ValidateConfig, now: datetime | None = None) -> ValidationReport:
    """Check one batch folder against the contract; pure (reads only, moves nothing)."""
    started = time.perf_counter()
    batch_dir = _require_batch_dir(batch_dir)
    now_utc = _naive_utc(now)
    failures: list[str] = []
    day = _batch_day(batch_dir, failures)
    tables = _read_tables(batch_dir, failures)

    parameters, unavailable = _suite_parameters(tables, day, now_utc, cfg)
    wording = {
        "day": str(day) if day else "unknown",
        "latest_allowed": str(parameters["latest_allowed"]),
        "max_text_length": str(cfg.max_text_length),
        "min_events": str(cfg.min_events),
        "max_events": str(cfg.max_events),
        "max_price": f"{MAX_PRICE:.0f}",
        "min_quantity": f"{-MAX_QUANTITY:.0f}",
        "max_quantity": f"{MAX_QUANTITY:.0f}",
        "earliest": str(EARLIEST.date()),
    }
    outcome = run_suites(tables, parameters, unavailable, wording)
    failures += outcome.failures
    skipped = [f"{t}: not checked (file could not be read)" for t in TABLES if t not in tables] + outcome.skipped
    return ValidationReport(
        batch=str(batch_dir),
        day=str(day) if day else None,
        checked_at=now_utc.isoformat(timespec="seconds"),
        failures=failures,
        skipped=skipped,
        rows={t: len(df) for t, df in tables.items()},
        elapsed_s=round(time.perf_counter() - started, 3),
    )


def gate_batch(
    batch_dir: Path,
    accepted_root: Path,
    quarantine_root: Path,
    cfg: ValidateConfig,
    move: bool = True,
    now: datetime | None = None,
) -> GateResult:
    """Validate, then move (or copy, move=False) the batch to accepted_root/<name> or quarantine_root/<name>.

    A batch whose day is already accepted is quarantined (never overwritten); a quarantine name already taken gets a
    .1, .2, ... suffix. Quarantined batches get report.json and report.md beside their untouched files.
    """
    batch_dir = _require_batch_dir(batch_dir)
    accepted_root, quarantine_root = Path(accepted_root), Path(quarantine_root)
    if batch_dir.resolve().parent in (accepted_root.resolve(), quarantine_root.resolve()):
        raise BatchInputError(f"{batch_dir} is already under {batch_dir.parent}; gate batches from an incoming folder")
    report = validate_batch(batch_dir, cfg, now=now)
    if report.ok and (accepted_root / batch_dir.name).exists():
        report.failures.append(f"{batch_dir.name}: {ALREADY_ACCEPTED} ({accepted_root / batch_dir.name})")
    if report.ok:
        dest = accepted_root / batch_dir.name
    else:
        dest = unused_path(quarantine_root / batch_dir.name)
    _transfer(batch_dir, dest, move)
    if not report.ok:
        report.write(dest)
    return GateResult(accepted=report.ok, dest=dest, report=report)


def _require_batch_dir(batch_dir: Path) -> Path:
    batch_dir = Path(batch_dir).resolve()  # "." or "day/" still name the day folder
    if not batch_dir.exists():
        raise BatchInputError(f"batch folder {batch_dir} does not exist")
    if not batch_dir.is_dir():
        raise BatchInputError(f"{batch_dir} is not a folder (a batch is a folder of parquet tables)")
    return batch_dir


def _naive_utc(now: datetime | None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now


def _batch_day(batch_dir: Path, failures: list[str]) -> date | None:
    """The day from the folder name; batch.json must agree. A bad name is a failure (accepted/ is keyed by day)."""
    folder_day = None
    try:
        folder_day = batch_day(batch_dir)
    except ValueError:
        failures.append(f"batch folder name {batch_dir.name!r} is not a date (expected YYYY-MM-DD)")
    meta_path = batch_dir / BATCH_META
    if not meta_path.exists():
        return folder_day
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta_day = date.fromisoformat(str(meta["day"])[:10]) if isinstance(meta, dict) and "day" in meta else None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        failures.append(f"{BATCH_META} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return folder_day
    if folder_day and meta_day and meta_day != folder_day:
        failures.append(f"{BATCH_META} says day {meta_day} but the folder is named {batch_dir.name}")
    day = folder_day or meta_day
    if day is not None and not EARLIEST.date() <= day < LATEST.date():
        failures.append(f"batch day {day} is outside {EARLIEST.date()}..{LATEST.date()}")
        return None
    return day


def _read_tables(batch_dir: Path, failures: list[str]) -> dict[str, pd.DataFrame]:
    """Every table that can be read; each one that cannot becomes a failure naming the file and why."""
    tables = {}
    for table in TABLES:
        path = batch_dir / f"{table}.parquet"
        if not path.exists():
            failures.append(f"{path.name}: file is missing")
            continue
        if path.stat().st_size == 0:
            failures.append(f"{path.name}: file is empty (0 bytes)")
            continue
        try:
            tables[table] = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any reader error means "unreadable", reported, never raised
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            failures.append(f"{path.name}: cannot be read as parquet ({reason})")
    return tables


def _suite_parameters(
    tables: dict[str, pd.DataFrame], day: date | None, now: datetime, cfg: ValidateConfig
) -> tuple[dict, dict[str, str]]:
    """GX suite parameters for this batch, and the ones that cannot be computed mapped to why."""
    parameters: dict = {
        "latest_allowed": pd.Timestamp(now + timedelta(minutes=cfg.max_future_minutes)),
        "max_text_length": cfg.max_text_length,
        "min_events": cfg.min_events,
        "max_events": cfg.max_events,
        "max_price": MAX_PRICE,
        "min_quantity": -MAX_QUANTITY,
        "max_quantity": MAX_QUANTITY,
        "earliest": EARLIEST,
    }
    unavailable: dict[str, str] = {}
    if day is None:
        unavailable.update({name: "the batch day is unknown"
                            for name in ("day_start", "day_end", "rooms_earliest", "rooms_latest")})
    else:
        parameters["day_start"] = pd.Timestamp(day)
        parameters["day_end"] = pd.Timestamp(day) + pd.Timedelta(days=1)
        parameters["rooms_earliest"] = parameters["day_start"] - pd.Timedelta(days=1)
        parameters["rooms_latest"] = parameters["day_end"] + pd.Timedelta(days=1)
    events = tables.get("events")
    for name, (table, column) in _REFERENCES.items():
        if table not in tables or column not in tables[table].columns:
            unavailable[name] = f"{table}.{column} could not be read"
            continue
        known = set(tables[table][column].dropna().astype(str))
        if events is not None and column in events.columns:
            # Same verdict, smaller set: GX copies value_set ~100 times per expectation (~0.1 ms per id in 1.24).
            known &= set(events[column].dropna().astype(str))
        parameters[name] = sorted(known)
    return parameters, unavailable


def _transfer(src: Path, dest: Path, move: bool) -> None:
    """Move (rename; copy-then-delete across filesystems) or copy src to dest; dest appears whole or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        raise FileExistsError(f"refusing to overwrite {dest}")
    if move:
        try:
            os.rename(src, dest)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    shutil.copytree(src, staging, dirs_exist_ok=True)
    os.rename(staging, dest)
    if move:
        shutil.rmtree(src)
