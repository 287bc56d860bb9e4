"""A tiny but complete workspace (git + params.yaml with small sizes) for end-to-end tests of the loop, and the
machinery for tests of real servers: free ports, a started-and-ready process, a headless Debian chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (.ci/run installs it); never `playwright install`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "reports" / "screenshots"  # for people to look at (copied to docs/img/ by hand)

TINY = {
    "simulate": {"days": 3, "n_users": 80, "n_items": 60, "n_hosts": 4, "rooms_per_day": 3, "items_per_room": 15},
    "validation": {"min_events": 5},
    "model": {"history_window": 10, "seq_dim": 16},
    "train": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "warmup_steps": 0, "eval_every": 2, "rank_trees": 20},
    "evaluate": {"max_users": 40, "bootstrap_samples": 50, "mf_iterations": 2, "mf_factors": 8},
    "drift": {"embedding_sample": 30, "eval_users": 20, "max_rows": 2000},
    "loop": {"package": False},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_params(root: Path, **sections) -> Path:
    """params.yaml in `root`: the repo's params with TINY sizes and any extra section overrides merged in."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = _merge(_merge(params, TINY), sections)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def tiny_workspace(tmp_path: Path) -> Path:
    """A git repo with a tiny params.yaml; returns the params path (the workspace root is its folder)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return write_params(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(cmd: list[str], cwd: Path, env: dict, ready: str, log: Path, timeout: float = 180):
    """Start `cmd` (its own process group), wait until GET `ready` (a full URL) answers 200, yield the process;
    the group is stopped afterwards. Fails with the log's tail when the process dies or never gets ready."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while True:
                assert proc.poll() is None, f"{cmd[:2]} exited: {log.read_text()[-3000:]}"
                try:
                    if httpx.get(ready, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.time() < deadline, f"{ready} not ready in {timeout} s: {log.read_text()[-3000:]}"
                time.sleep(0.5)
            yield proc
        finally:
            with suppress(ProcessLookupError):  # a test may have killed it already
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@pytest.fixture(scope="module")
def browser():
    """Playwright driving Debian's chromium, headless; skipped with the reason where either is missing.

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it is open, which
    would break every later test that calls asyncio.run (the Prefect client ones)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (.ci/run installs Debian's `chromium` package where it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


WRITE_TOKEN = "test-write-token-0123456789abcdef"  # made up per run of the suite; never a real secret


def start_liveloop(root: Path, host: str = "127.0.0.1", port: int | None = None, **env):
    """`bentoml serve` of the service packaged in `root` (see test_serving.build_workspace), as a `running` context."""
    from tests.integration.test_serving import _env

    port = port or free_port()
    cmd = [str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender", "--host", host, "--port", str(port)]
    ready = f"http://127.0.0.1:{port}/readyz"
    return running(cmd, root, {**_env(root), **env}, ready, root / f"server-{port}.log"), port


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    """One real service for the hardening and fuzz tests: the hand-made day of test_serving, packaged, served on
    loopback with a write token and a 200 kB body limit. Yields client (no token), auth headers, root, port, log."""
    from tests.integration.test_serving import _package, build_workspace

    root = tmp_path_factory.mktemp("guarded")
    params = build_workspace(root, REPO / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["serve"].update({"now": "latest", "reload_poll_seconds": 0.5, "max_k": 50, "max_body_bytes": 200_000})
    params.write_text(yaml.safe_dump(raw))
    _package(root, "--no-build")
    context, port = start_liveloop(root, LIVELOOP_API_TOKEN=WRITE_TOKEN)
    with context as proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield {"client": client, "auth": {"Authorization": f"Bearer {WRITE_TOKEN}"}, "root": root, "port": port,
               "proc": proc, "log": root / f"server-{port}.log", "token": WRITE_TOKEN,
               "feedback_log": root / "data" / "feedback" / "events.jsonl"}
