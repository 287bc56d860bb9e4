"""Load + hot reload: locust (bench/locustfile.py, headless) against a fresh local `bentoml serve`, mixing /recommend,
/feedback and /items, with a new champion promoted and packaged half-way. Reports requests, concurrency, status
codes per route (5xx and unanswered counted), feedback events acknowledged vs found in the durable log, and how
long the reload took (package, then until /v1/ready names the new model).

    .venv/bin/python bench/load.py --requests 10000 --users 32 --out /tmp/load.json

The world is the hand-made live-commerce day of tests/integration/test_serving.py (30 items, 12 users), served with
a write token on loopback. bench/serve.py keeps the in-process ceiling and the catalogue-size sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import start_liveloop  # noqa: E402  (the test world and its server, not a copy)
from tests.integration.test_serving import _package, build_workspace, promote_fresh_model  # noqa: E402

ROUTES = ("/recommend", "/feedback", "/items")
_TOTAL = re.compile(r'^bentoml_service_request_total\{[^}]*endpoint="(/[a-z]+)"[^}]*\} ([0-9.e+]+)$', re.M)


def served_requests(client: httpx.Client) -> int:
    """Requests the service has answered on the load routes so far (from its Prometheus /metrics)."""
    return int(sum(float(n) for route, n in _TOTAL.findall(client.get("/metrics").text) if route in ROUTES))


def reload_half_way(root: Path, client: httpx.Client, at: int, out: dict) -> None:
    """Once `at` requests are served: promote a fresh model, package it, time until the service serves it."""
    from liveloop.config import load_config
    from liveloop.workspace import Workspace

    while served_requests(client) < at:
        time.sleep(0.5)
    out["at_requests"] = served_requests(client)
    cfg = load_config(root / "params.yaml")
    started = time.perf_counter()
    promote_fresh_model(Workspace(root, root / ".liveloop"), cfg.model.model_copy(update={"seq_dim": 16}),
                        root / "candidate-2", seed=1)
    _package(root, "--no-build")
    packaged = time.perf_counter()
    while client.get("/v1/ready").json()["model_version"] != "v0002":
        time.sleep(0.1)
    out.update(package_s=round(packaged - started, 2), switch_s=round(time.perf_counter() - packaged, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=32, help="concurrent locust users (c)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from liveloop.serving.feedback import read_log
    from liveloop.workspace import Workspace

    for key, value in Workspace(root=REPO, state=REPO / ".liveloop").tool_env().items():
        os.environ.setdefault(key, value)
    root = Path(tempfile.mkdtemp(prefix="liveloop-load-"))
    params = build_workspace(root, REPO / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["serve"].update({"now": "latest", "reload_poll_seconds": 0.5})
    params.write_text(yaml.safe_dump(raw))
    _package(root, "--no-build")
    token = secrets.token_urlsafe(32)
    context, port = start_liveloop(root, LIVELOOP_API_TOKEN=token)
    result_file = root / "locust-result.json"
    reload: dict = {}
    with context, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        watcher = threading.Thread(target=reload_half_way, args=(root, client, args.requests // 2, reload), daemon=True)
        watcher.start()
        started = time.perf_counter()
        locust = subprocess.run(
            [str(BIN / "locust"), "-f", str(REPO / "bench" / "locustfile.py"), "--headless", "-u", str(args.users),
             "-r", str(args.users), "--host", f"http://127.0.0.1:{port}", "--only-summary", "--stop-timeout", "30"],
            env={**os.environ, "LOAD_TOKEN": token, "LOAD_REQUESTS": str(args.requests),
                 "LOAD_RESULT": str(result_file)}, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        watcher.join(timeout=120)
        final_version = client.get("/v1/ready").json()["model_version"]
    result = json.loads(result_file.read_text())
    status = result["status"]
    acked = set(result["acked_event_ids"])
    logged = {r["event_id"] for r in read_log(root / "data" / "feedback" / "events.jsonl") if r.get("kind") == "event"}
    summary = {
        "requests": sum(sum(codes.values()) for codes in status.values()), "concurrency": args.users,
        "seconds": round(elapsed, 1), "status": status,
        "server_errors": sum(n for codes in status.values() for code, n in codes.items() if int(code) >= 500 or code == "0"),
        "events_acked": len(acked), "acked_in_log": len(acked & logged), "events_in_log": len(logged),
        "reload": reload, "final_model_version": final_version, "locust_rc": locust.returncode,
        "machine": f"{os.cpu_count()} CPUs", "workspace": str(root),
    }
    print(locust.stdout[-3000:], locust.stderr[-2000:], sep="\n")
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
