"""Against a real `prefect server` on 127.0.0.1: register the deployments, trigger live_loop, see it complete
with its artifacts; then monitor-drift's drift event makes the retrain-on-drift automation retrain on that batch
(not while the loop runs, not on live_loop's own drift events)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from liveloop.workspace import open_workspace
from tests.integration.conftest import write_params

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_served_deployment_completes_with_artifacts(tiny_workspace: Path, tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from liveloop.data.simulator import simulate
    from liveloop.validation import gate_batch

    # schedules that do not fire during the test: a cron run of monitor-drift would add drift events of its own
    yearly = "0 0 1 1 *"
    write_params(tiny_workspace.parent, loop={"cron": yearly, "monitor_cron": yearly, "feedback_cron": yearly})
    cfg, ws = open_workspace(tiny_workspace)
    cfg.simulate.days = 2
    second = simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)[1]
    # day two passes the gate but is never trained on: the batch a drift event should retrain on
    assert gate_batch(second, ws.accepted, ws.quarantine, cfg.validation).accepted

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    env.pop("PREFECT_PROFILES_PATH", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=open(logs / "server.log", "w"),
                              stderr=subprocess.STDOUT)
    served = None
    try:
        def healthy():
            try:
                return httpx.get(f"{api}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(healthy, 120, "prefect server health")
        served = subprocess.Popen([sys.executable, "-m", "flows.serve", "--no-server", "--params", str(tiny_workspace)],
                                  cwd=REPO, env=env, stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT)

        with temporary_settings({PREFECT_API_URL: api}):
            async def deployment_names():
                async with get_client() as client:
                    return {d.name for d in await client.read_deployments()}

            expected = {"live-loop", "monitor-drift", "retrain-on-drift", "ingest-feedback", "replay-timeline"}
            _wait(lambda: asyncio.run(deployment_names()) >= expected, 120, f"deployments {sorted(expected)}")

            async def trigger():
                async with get_client() as client:
                    deployment = await client.read_deployment_by_name("live_loop/live-loop")
                    assert deployment.schedules, "live-loop should carry its cron schedule"
                    return await client.create_flow_run_from_deployment(deployment.id)

            flow_run = asyncio.run(trigger())

            async def final_state():
                async with get_client() as client:
                    run = await client.read_flow_run(flow_run.id)
                    return run.state if run.state and run.state.is_final() else None

            state = _wait(lambda: asyncio.run(final_state()), 420, "the live_loop flow run to finish")
            assert state.is_completed(), f"{state.name}: {state.message}\n{(logs / 'serve.log').read_text()[-3000:]}"

            async def artifacts():
                async with get_client() as client:
                    return await client.read_artifacts(
                        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))

            keys = {a.key for a in asyncio.run(artifacts())}
            assert any(k and k.startswith("batch-") for k in keys), keys
            _retrain_on_drift(ws, ws.accepted / second.name, logs / "serve.log")
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _retrain_on_drift(ws, batch: Path, serve_log: Path) -> None:
    """Drift events for `batch` (sent with the flows' own helper, as monitor_drift sends them; the drift check is
    tests/integration/test_drift.py) make the automation run retrain-on-drift with the batch and the event's verdict:
    left to the loop while a live_loop run is in flight, a real retrain once it is idle; live_loop's own drift events
    start nothing. (No second retrain of a trained-on batch: tests/unit/test_retrain.py.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.events.worker import EventsWorker
    from prefect.states import Completed, Running

    from flows.events import emit_drift
    from flows.live_loop import live_loop
    from liveloop import registry

    batch = batch.resolve()

    def emit(source: str, reason: str) -> None:
        emit_drift(source, batch, {"reasons": [reason], "signals": {"drifted_share": 0.5}})
        EventsWorker.drain_all()  # sent now (a worker is per process and would otherwise send in the background)

    def trained_on_batch() -> list[str]:
        return [e["version"] for e in registry.load_registry(ws) if batch.name in e["data_versions"]]

    with get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("retrain_on_drift/retrain-on-drift")

        def retrain_runs():
            return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[retrain.id])),
                                         sort=FlowRunSort.EXPECTED_START_TIME_ASC)

        def finished(run_id):
            state = client.read_flow_run(run_id).state
            return state if state and state.is_final() else None

        def nth_retrain(n: int, reason: str) -> None:
            """Wait for the n-th retrain-on-drift run: the event's batch and verdict, completed."""
            run = _wait(lambda: (lambda rs: rs[n - 1] if len(rs) >= n else None)(retrain_runs()), 120,
                        f"retrain-on-drift run #{n} from the automation")
            assert run.parameters["batch_dir"] == str(batch), run.parameters
            assert run.parameters["params"] == str(ws.root.resolve() / "params.yaml"), run.parameters
            assert run.parameters["drift"]["reasons"] == [reason], run.parameters
            state = _wait(lambda: finished(run.id), 300, f"retrain-on-drift run #{n} to finish")
            assert state.is_completed(), f"{state.name}: {state.message}\n{serve_log.read_text()[-3000:]}"

        EventsWorker.drain_all()  # a worker left by an earlier test in this process would send to that test's API
        # 1. while a live_loop run is in flight: live_loop's event starts nothing, monitor_drift's is left to the loop
        in_flight = client.create_flow_run(live_loop, name="loop-in-flight", state=Running())
        emit("live_loop", "the loop retrains on its own drift")
        emit("monitor_drift", "event_type drifted (first)")
        nth_retrain(1, "event_type drifted (first)")  # events are handled in order: a run from the first would be #1
        assert trained_on_batch() == [], "a retrain started while live_loop was in flight"

        # 2. with the loop idle the event retrains on the batch, planned on the event's verdict
        client.set_flow_run_state(in_flight.id, Completed(), force=True)
        emit("monitor_drift", "event_type drifted (again)")
        nth_retrain(2, "event_type drifted (again)")
        assert len(trained_on_batch()) == 1 and len(retrain_runs()) == 2, (trained_on_batch(), retrain_runs())
        summary = json.loads((ws.reports / "loop" / f"{batch.name}.json").read_text())
        assert summary["status"] in ("promoted", "rejected"), summary
        assert "drift: event_type drifted (again)" in summary["train_reasons"], summary["train_reasons"]
