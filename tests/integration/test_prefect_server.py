"""Against a real `prefect server` on 127.0.0.1: register the deployments, trigger live_loop, see it complete
with its artifacts."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from liveloop.workspace import open_workspace

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

    cfg, ws = open_workspace(tiny_workspace)
    cfg.simulate.days = 1
    simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
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

            expected = {"live-loop", "monitor-drift", "ingest-feedback", "replay-timeline"}
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
    finally:
        for proc in (served, server):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
