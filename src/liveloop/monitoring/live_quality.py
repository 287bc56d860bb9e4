"""Live quality from the service's feedback log: what users did with what was shown, next to the last batch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from liveloop.data.batches import read_batch


def funnel(events: pd.DataFrame) -> dict:
    """Event counts per type and the click-through / purchase rates per impression."""
    counts = events["event_type"].value_counts().to_dict() if len(events) else {}
    shown = counts.get("impression", 0)
    return {
        "events": int(len(events)),
        "counts": {k: int(v) for k, v in counts.items()},
        "ctr": counts.get("click", 0) / shown if shown else None,
        "purchase_rate": counts.get("purchase", 0) / shown if shown else None,
    }


def live_quality(feedback_records: list[dict], reference_batch: Path | None) -> dict:
    """Funnel of the logged feedback events vs the funnel of the latest accepted batch."""
    events = pd.DataFrame([r for r in feedback_records if r.get("kind") == "event"], columns=["event_type"])
    out = {"feedback": funnel(events)}
    if reference_batch is not None:
        out["reference"] = {"batch": Path(reference_batch).name, **funnel(read_batch(reference_batch)["events"])}
    return out
