"""The served deployments: every one built from `configured` (the task runner of params, as `make run`), the cron
schedules of params, and the retrain-on-drift trigger on monitor_drift's drift events. The trigger firing on a real
server is tests/integration/test_prefect_server.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prefect.events.schemas.events import Resource

from flows.events import DRIFT_EVENT, _plain, drift_resource
from flows.serve import deployments
from liveloop.workspace import open_workspace
from tests.integration.conftest import write_params

DASK = "tcp://10.1.2.3:8786"  # never contacted: a task runner connects when a flow run starts


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    params = write_params(tmp_path_factory.mktemp("ws"), loop={"task_runner": "dask", "dask_address": DASK,
                                                                "cron": "*/7 * * * *"})
    cfg, _ = open_workspace(params)
    return params, cfg, {settings["name"]: (flow_obj, settings) for flow_obj, settings in deployments(str(params))}


def test_every_deployment_runs_with_the_configured_task_runner(served):
    params, cfg, by_name = served
    assert set(by_name) == {"live-loop", "monitor-drift", "retrain-on-drift", "ingest-feedback", "replay-timeline"}
    for name, (flow_obj, settings) in by_name.items():
        runner = flow_obj.task_runner
        assert type(runner).__name__ == "DaskTaskRunner" and runner.address == DASK, (name, runner)
        deployment = flow_obj.to_deployment(**settings)
        assert deployment.parameters["params"] == str(Path(params).resolve()), name
    assert [s.schedule.cron for s in by_name["live-loop"][0].to_deployment(**by_name["live-loop"][1]).schedules] \
        == ["*/7 * * * *"]
    assert by_name["monitor-drift"][1]["cron"] == cfg.loop.monitor_cron


def test_retrain_on_drift_is_triggered_by_monitor_drift_events_only(served):
    params, _, by_name = served
    flow_obj, settings = by_name["retrain-on-drift"]
    (trigger,) = flow_obj.to_deployment(**settings).triggers
    assert trigger.expect == {DRIFT_EVENT}
    assert trigger.parameters == {"batch_dir": "{{ event.payload.batch_dir }}", "drift": "{{ event.payload }}",
                                  "params": str(Path(params).resolve())}
    batch = Path("/data/accepted/2026-11-30")
    assert trigger.match.matches(Resource.model_validate(drift_resource("monitor_drift", batch)))
    for other in ("live_loop", "retrain_on_drift"):  # these flows retrain in the same run that found the drift
        assert not trigger.match.matches(Resource.model_validate(drift_resource(other, batch))), other


def test_drift_signals_become_json_numbers():
    assert _plain(np.float32(0.25)) == 0.25 and isinstance(_plain(np.int64(3)), int)
    assert _plain(np.array([0.5, 1.0])) == [0.5, 1.0]
    assert _plain(Path("/x")) == "/x"
