"""retrain_on_drift: update the model on an accepted batch in which drift was found after the loop took it in.

The retrain-on-drift deployment runs it from monitor_drift's drift event (flows/events.py), with the event's verdict
(so the drift is not checked a second time). The work is liveloop.loop.retrain_batch (also `liveloop loop --retrain
BATCH`, which checks drift itself) over the same Prefect tasks as live_loop. While a live_loop run is in flight the
batch is left to it: that run is taking the newest batch in and decides on its own drift, and two updates at once
would train into the same candidate folder. monitor_drift checks again on its schedule.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType

from flows.live_loop import PrefectSteps, live_loop
from liveloop import loop
from liveloop.workspace import open_workspace


def loop_runs_in_flight() -> list[str]:
    """Names of the live_loop flow runs that are pending or running now (scheduled ones have not started)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[live_loop.name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING]))))
    return [run.name for run in runs]


@flow(name="retrain_on_drift", log_prints=True)
def retrain_on_drift(batch_dir: str, params: str = "params.yaml", drift: dict | None = None) -> dict:
    """Retrain on `batch_dir` (a folder in data/accepted) unless the loop is busy or already trained on it; `drift`
    is the verdict found (the event's payload: drift, reasons, signals, report_html)."""
    cfg, ws = open_workspace(params)
    busy = loop_runs_in_flight()
    if busy:
        get_run_logger().info("live_loop run(s) %s in flight; leaving %s to the loop", ", ".join(busy), batch_dir)
        return {"batch": Path(batch_dir).name, "status": "loop-in-flight", "loop_runs": busy}
    verdict = loop.DriftVerdict.from_check(drift) if drift else None
    return loop.retrain_batch(cfg, ws, Path(batch_dir), steps=PrefectSteps(params), drift=verdict)
