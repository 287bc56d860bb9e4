"""monitor_drift: drift check of the latest accepted batch against the champion's reference window, plus live
quality from the service's feedback log, on its own schedule. Drift found is also a Prefect event
(flows/events.py) on which the retrain-on-drift deployment updates the model on that batch.
ingest_feedback: turns a day of the service's feedback log into a batch in data/incoming for live_loop.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.events import DRIFT_EVENT, emit_drift
from flows.live_loop import drift_task
from liveloop.workspace import open_workspace


@task
def live_quality_task(params: str) -> dict:
    from liveloop.data.batches import list_batches
    from liveloop.monitoring.live_quality import live_quality
    from liveloop.serving.feedback import log_path, read_log

    _, ws = open_workspace(params)
    accepted = list_batches(ws.accepted)
    return live_quality(read_log(log_path(ws)), accepted[-1] if accepted else None)


def _rate(value) -> str:
    return "-" if value is None else f"{value:.3%}"


@flow(name="monitor_drift", log_prints=True)
def monitor_drift(params: str = "params.yaml") -> dict:
    from liveloop.data.batches import list_batches

    logger = get_run_logger()
    cfg, ws = open_workspace(params)
    accepted = list_batches(ws.accepted)
    quality = live_quality_task(params)
    lines = ["# Live quality (feedback log)", "", "| source | events | CTR | purchase rate |", "|---|---|---|---|",
             f"| feedback | {quality['feedback']['events']} | {_rate(quality['feedback']['ctr'])} "
             f"| {_rate(quality['feedback']['purchase_rate'])} |"]
    if "reference" in quality:
        ref = quality["reference"]
        lines.append(f"| batch {ref['batch']} | {ref['events']} | {_rate(ref['ctr'])} | {_rate(ref['purchase_rate'])} |")
    if len(accepted) < 2:
        logger.info("need at least two accepted batches to compare, have %d", len(accepted))
        verdict = {"drift": False, "reasons": ["not enough accepted batches to compare"], "signals": {}}
    else:
        reference = [str(p) for p in accepted[:-1][-cfg.loop.reference_window:]]
        verdict = drift_task(params, reference, str(accepted[-1]))
        if verdict["drift"]:
            emit_drift("monitor_drift", accepted[-1], verdict)
    lines += ["", f"# Drift of {accepted[-1].name if accepted else '-'}: {'yes' if verdict['drift'] else 'no'}", ""]
    lines += [f"- {r}" for r in verdict.get("reasons", [])]
    if verdict["drift"]:
        lines += ["", f"Emitted `{DRIFT_EVENT}`: the retrain-on-drift deployment updates the model on this batch."]
    if verdict.get("report_html"):
        lines += ["", f"[drift report]({Path(verdict['report_html']).resolve().as_uri()})"]
    create_markdown_artifact(markdown="\n".join(lines), key="drift-monitor", description="drift and live quality")
    return {**verdict, "live_quality": quality}


@flow(name="ingest_feedback", log_prints=True)
def ingest_feedback(params: str = "params.yaml", day: str | None = None) -> str | None:
    """Export one day of /feedback events (default: yesterday) as data/incoming/<day>-feedback."""
    from liveloop.serving.feedback import FeedbackError, export_feedback

    _, ws = open_workspace(params)
    day = day or str(date.today() - timedelta(days=1))
    try:
        return str(export_feedback(ws, day))
    except FeedbackError as exc:
        get_run_logger().info("nothing to ingest: %s", exc)
        return None
