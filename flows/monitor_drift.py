"""monitor_drift: drift and live-quality check of the latest accepted batch (and the service's feedback log)
against the champion's reference window, on its own schedule. It reports; live_loop decides on retraining.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.live_loop import drift_task
from liveloop.workspace import open_workspace


@flow(name="monitor_drift", log_prints=True)
def monitor_drift(params: str = "params.yaml") -> dict:
    from liveloop.data.batches import list_batches

    logger = get_run_logger()
    cfg, ws = open_workspace(params)
    accepted = list_batches(ws.accepted)
    if len(accepted) < 2:
        logger.info("need at least two accepted batches to compare, have %d", len(accepted))
        return {"drift": False, "reasons": ["not enough accepted batches"], "signals": {}}
    current = accepted[-1]
    reference = [str(p) for p in accepted[:-1][-cfg.loop.reference_window:]]
    verdict = drift_task(params, reference, str(current))
    lines = [f"# Drift check of {current.name}", "", f"**Drift:** {'yes' if verdict['drift'] else 'no'}", ""]
    lines += [f"- {r}" for r in verdict.get("reasons", [])]
    if verdict.get("report_html"):
        lines += ["", f"[report]({Path(verdict['report_html']).resolve().as_uri()})"]
    create_markdown_artifact(markdown="\n".join(lines), key="drift-monitor", description="latest drift check")
    return verdict
