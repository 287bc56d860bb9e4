"""`make ui`: start a local Prefect server on 127.0.0.1, register the scheduled deployments and serve them.

The deployments run in this process (Prefect's `serve`), so no work pool or worker is needed on a laptop.
For a remote work pool see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prefect import serve

from flows.live_loop import live_loop
from flows.monitor_drift import ingest_feedback, monitor_drift
from flows.replay_timeline import replay_timeline
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


def deployments(params: str):
    """The scheduled deployments, parameterised with an absolute params path so any worker finds the workspace."""
    cfg, _ = open_workspace(params)
    params = str(Path(params).resolve())
    return [
        live_loop.to_deployment(name="live-loop", cron=cfg.loop.cron, parameters={"params": params},
                                description="Take the oldest batch in data/incoming through the loop."),
        monitor_drift.to_deployment(name="monitor-drift", cron=cfg.loop.monitor_cron, parameters={"params": params},
                                    description="Drift check of the latest accepted batch."),
        ingest_feedback.to_deployment(name="ingest-feedback", cron=cfg.loop.feedback_cron, parameters={"params": params},
                                      description="Yesterday's /feedback events -> data/incoming as the next batch."),
        replay_timeline.to_deployment(name="replay-timeline", parameters={"params": params},
                                      description="Simulate days and run the loop over them (what make run does)."),
    ]


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
        serve(*deployments(args.params))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
