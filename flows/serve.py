"""`make ui`: start a local Prefect server on 127.0.0.1, register the scheduled deployments and serve them.

The deployments run from this process (a Prefect Runner), so no work pool or worker is needed on a laptop.
For a remote work pool see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prefect.exceptions import TerminationSignal
from prefect.runner import Runner

from flows.events import retrain_trigger
from flows.live_loop import configured, live_loop
from flows.monitor_drift import ingest_feedback, monitor_drift
from flows.replay_timeline import replay_timeline
from flows.retrain import retrain_on_drift
from liveloop.workspace import open_workspace


def start_server(host: str, port: int, log_file: Path) -> subprocess.Popen:
    """`prefect server start` in the background; returns once /api/health answers."""
    log = open(log_file, "a")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://{host}:{port}/api/health"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}; see {log_file}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"prefect server did not become healthy within 90 s; see {log_file}")


def deployments(params: str) -> list[tuple]:
    """Each deployment as (flow with the task runner of params, its deployment settings), parameterised with an
    absolute params path so any worker finds the workspace. The flows come from `configured`, as in `make run`."""
    cfg, _ = open_workspace(params)
    params = str(Path(params).resolve())
    fixed = {"params": params}
    return [(configured(flow_obj, cfg), {"parameters": fixed, **settings}) for flow_obj, settings in [
        (live_loop, {"name": "live-loop", "cron": cfg.loop.cron,
                     "description": "Take the oldest batch in data/incoming through the loop."}),
        (monitor_drift, {"name": "monitor-drift", "cron": cfg.loop.monitor_cron,
                         "description": "Drift check of the latest accepted batch; drift found is an event."}),
        (retrain_on_drift, {"name": "retrain-on-drift", "triggers": [retrain_trigger(params)], "concurrency_limit": 1,
                            "description": "Retrain on the batch of a monitor-drift drift event."}),
        (ingest_feedback, {"name": "ingest-feedback", "cron": cfg.loop.feedback_cron,
                           "description": "Yesterday's /feedback events -> data/incoming as the next batch."}),
        (replay_timeline, {"name": "replay-timeline",
                           "description": "Simulate days and run the loop over them (what make run does)."}),
    ]]


def serve(params: str) -> None:
    """Register the deployments and run their flow runs until stopped. Runner.add_flow keeps each configured flow
    object for its runs; Prefect's `serve(*flow.to_deployment(...))` would re-import the flow from its entrypoint
    and run it with the decorator's task runner instead of the configured one."""
    runner = Runner(name="liveloop", pause_on_shutdown=True)
    for flow_obj, settings in deployments(params):
        runner.add_flow(flow_obj, **settings)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):  # Ctrl-C or SIGTERM: how `make ui` stops; schedules are paused
        print("liveloop deployments stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description="Prefect UI with liveloop's scheduled deployments.")
    parser.add_argument("--params", default="params.yaml", help="params.yaml of the workspace")
    parser.add_argument("--host", default="127.0.0.1", help="address the server binds (loopback by default)")
    parser.add_argument("--port", type=int, default=4200, help="server port")
    parser.add_argument("--no-server", action="store_true", help="use the server at PREFECT_API_URL instead")
    args = parser.parse_args()
    _, ws = open_workspace(args.params)
    ws.prefect_home.mkdir(parents=True, exist_ok=True)
    server = None
    if not args.no_server:
        server = start_server(args.host, args.port, ws.prefect_home / "server.log")
        os.environ["PREFECT_API_URL"] = f"http://{args.host}:{args.port}/api"
        print(f"Prefect UI: http://{args.host}:{args.port}  (server log: {ws.prefect_home / 'server.log'})")
    try:
        serve(args.params)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
