"""Drift as a Prefect event, and the deployment trigger that turns it into a retrain.

A drift check that finds drift emits `liveloop.drift.detected` about its batch (resource `liveloop.batch.<day>`,
labelled with the batch folder and the flow that checked), with the reasons and signals as payload: it shows in the
UI's event feed and any automation can react to it. The retrain-on-drift deployment (flows/serve.py) carries
`retrain_trigger`, so Prefect runs flows/retrain.py for that batch: "drift triggers fine-tuning", next to the cron
schedules. The trigger matches only monitor_drift's events: live_loop retrains on drift it finds in the same run
(liveloop.loop.plan_retrain), so matching its events would start a second update of the batch the loop is training on.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect.events import DeploymentEventTrigger, emit_event

DRIFT_EVENT = "liveloop.drift.detected"
SOURCE_LABEL = "liveloop.drift.source"
RETRAIN_SOURCE = "monitor_drift"  # the flow whose drift events start a retrain


def batch_resource_id(day: str) -> str:
    return f"liveloop.batch.{day}"


def drift_resource(source: str, batch_dir: Path) -> dict[str, str]:
    """The event's resource: the batch (one id per day), its folder and the flow whose check found the drift."""
    return {"prefect.resource.id": batch_resource_id(batch_dir.name), "prefect.resource.name": batch_dir.name,
            "liveloop.batch.path": str(batch_dir), SOURCE_LABEL: source}


def emit_drift(source: str, batch_dir: str | Path, verdict: dict):
    """Emit DRIFT_EVENT for `batch_dir` from the flow `source`; returns the event (None where events are off).
    The payload is the verdict (drift, reasons, signals, report) plus the batch folder the retrain takes."""
    batch_dir = Path(batch_dir).resolve()
    payload = {"batch_dir": str(batch_dir), "day": batch_dir.name, "source": source, "drift": True,
               "reasons": list(verdict.get("reasons") or []), "report_html": verdict.get("report_html"),
               "signals": json.loads(json.dumps(verdict.get("signals") or {}, default=_plain))}
    return emit_event(DRIFT_EVENT, resource=drift_resource(source, batch_dir), payload=payload)


def _plain(value):
    """numpy scalars and arrays as Python numbers and lists, anything else JSON cannot hold as its text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def retrain_trigger(params: str) -> DeploymentEventTrigger:
    """Run the deployment once per monitor_drift drift event, on that event's batch and verdict."""
    return DeploymentEventTrigger(
        name="retrain on drift", description=f"{DRIFT_EVENT} from {RETRAIN_SOURCE} -> retrain on that batch",
        expect={DRIFT_EVENT}, match={"prefect.resource.id": batch_resource_id("*"), SOURCE_LABEL: RETRAIN_SOURCE},
        for_each={"prefect.resource.id"}, threshold=1,
        parameters={"batch_dir": "{{ event.payload.batch_dir }}", "drift": "{{ event.payload }}", "params": params})
