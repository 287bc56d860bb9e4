"""Serving benchmark: a real `bentoml serve` of a trained model over a simulated world with ~10k live items.

The world is the project's simulator with a big catalogue and many overlapping rooms, so that at the serve clock
(`serve.now: latest`) about `--items` products are live; the model is the current one (sequence user tower over
cached MiniLM vectors + LightGBM ranker), trained with a few steps (this measures cost, not quality), registered,
promoted and packaged by the project's own functions. Every request is POST /recommend for a new user carrying
recent events (two purchases and a click of live items), so each pays the whole path: validation, the user's state,
one user-tower encode from the cached item vectors (adaptively batched), top-k over all live items, the ranker over
the candidates and the reasons. Nothing comes from the user cache.

Besides the HTTP numbers (c=1 latency, c=16 throughput, each level `--repeats` times, medians reported) it measures
two in-process ceilings on the same package: the user-tower encode at batch 64 (rows/s) and the whole engine path
(`engine.recommend`, one request at a time, no HTTP), plus a cProfile of that path (where the time goes) and the
ranker stage alone over `model.rank_candidates` candidates (`ranker_stage`: what a package with a ranker adds).

    .venv/bin/python bench/serve.py --keep /tmp/sb10k --out /tmp/run1.json  # builds the world, then measures
    .venv/bin/python bench/serve.py --keep /tmp/sb10k --out /tmp/run2.json  # the same package measured again
    .venv/bin/python bench/serve.py --items 2000 --requests 100 --repeats 1  # a quick look

Building the 10k world took ~25 min on a shared 2-core box (most of it MiniLM over 10k item texts, then the
ranker fit); a run that reuses it takes ~4 min.

The batches go straight to data/accepted (the simulator's output is valid by construction; the gate is not what
is measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# With 320 rooms a day (seed 7) 30 overlap the last room's start (the serve clock); rooms of 0.16 n items then show
# ~97% of a 1.03 n catalogue (10,036 live of 10,300 for n = 10k). Users and days only give the model a history.
WORLD = {"days": 2, "n_users": 2000, "new_item_fraction": 0.0, "rooms_per_day": 320}
CHEAP_TRAINING = {"steps": 20, "batch_size": 128, "warmup_steps": 0, "eval_every": 10, "rank_trees": 50}


def world_params(root: Path, n_items: int) -> Path:
    """params.yaml for the bench workspace: the repo's params, a big world, cheap training, the serve clock."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["paths"] = {"root": str(root), "state": str(root / ".liveloop")}
    raw["simulate"].update(WORLD, n_items=int(n_items * 1.03), items_per_room=max(25, int(n_items * 0.16)))
    raw["train"].update(CHEAP_TRAINING)
    raw["serve"]["now"] = "latest"
    raw["loop"]["package"] = False
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def build_package(params: Path, reuse: bool) -> tuple[dict, str]:
    """Simulate -> train from scratch -> register + promote -> save to the BentoML store; (timings, model path).
    With `reuse`, the model already packaged in this workspace (a second measurement of the same world)."""
    import bentoml

    from liveloop.data.simulator import simulate
    from liveloop.registry import promote, register
    from liveloop.serving.package import MODEL_NAME, save_champion_model
    from liveloop.training import train
    from liveloop.workspace import open_workspace

    cfg, ws = open_workspace(params)
    if reuse:
        stored = bentoml.models.get(f"{MODEL_NAME}:latest")
        return {"reused": str(stored.tag)}, stored.path
    timings = {}
    t0 = time.perf_counter()
    batches = simulate(cfg.simulate, cfg.seed, ws.accepted, ws.simulator_truth)
    t1 = time.perf_counter()
    result = train(cfg, ws, batches, "scratch", ws.candidates / "bench")
    entry = register(ws, result.model_dir, parent=None, data_versions={}, params={}, metrics={})
    promote(ws, entry["version"])
    t2 = time.perf_counter()
    tag = save_champion_model(cfg, ws)
    timings.update(simulate_s=t1 - t0, train_s=t2 - t1, package_s=time.perf_counter() - t2)
    return timings, bentoml.models.get(tag).path


def request_body(i: int, live: np.ndarray) -> dict:
    """A new user (never seen, nothing cached) with three recent events on live items."""
    rng = np.random.default_rng(i)
    picks = live[rng.integers(0, len(live), size=3)]
    events = [{"item_id": str(picks[0]), "event_type": "purchase", "quantity": 1},
              {"item_id": str(picks[1]), "event_type": "purchase", "quantity": 1},
              {"item_id": str(picks[2]), "event_type": "click"}]
    return {"user_id": f"bench-{i}", "k": 10, "recent_events": events}


async def post_json(reader, writer, path: str, body: dict) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST on an open connection: a minimal client, so the load generator sharing the
    2 cores with the server costs far less CPU than a full HTTP library would."""
    payload = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its children (bentoml serve runs its worker as a child)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def load(port: int, server_pid: int, live: np.ndarray, concurrency: int, requests: int, offset: int) -> dict:
    """Closed-loop load: `concurrency` keep-alive clients, `requests` in all; latency per request, errors counted,
    and the server's CPU time per request (on a shared box the steadier number: it does not count the wait for a
    core, which the wall-clock numbers do)."""
    latencies, errors = [], []
    counter = iter(range(requests))

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                body = request_body(offset + i, live)
                start = time.perf_counter()
                try:
                    status, raw = await post_json(reader, writer, "/recommend", body)
                    ok = status == 200 and len(json.loads(raw)["items"]) == 10
                    problem = f"HTTP {status}"
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # counted and reported
                    ok, problem = False, type(exc).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies.append(time.perf_counter() - start)
                if not ok:
                    errors.append(problem)
        finally:
            writer.close()

    load_before, cpu_before = os.getloadavg()[0], cpu_seconds(server_pid)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    cpu = cpu_seconds(server_pid) - cpu_before
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": requests, "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "req_per_s": requests / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "server_cpu_ms_per_request": 1000 * cpu / requests,
            "server_cores_used": cpu / wall, "load_avg_1min": [load_before, os.getloadavg()[0]]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, env: dict, port: int) -> subprocess.Popen:
    import httpx

    log_path = root / f"server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not ready in 300 s: {log_path.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def encode_ceiling(state, bodies: list[dict], seconds: float) -> float:
    """User-tower encodes in-process at batch 64 (the server's batch cap) on the requests' user states: rows/s."""
    from liveloop.serving.engine import event_records
    from liveloop.serving.state import build_profile

    states = [build_profile(event_records(state, b["recent_events"], b["user_id"]), state.host_of, state.index.now,
                            state.users.window).state for b in bodies]
    scorer = state.scorer()
    scorer.user_vectors(states[:64])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        offset = done % (len(states) - 63)
        scorer.user_vectors(states[offset: offset + 64])
        done += 64
    return done / (time.perf_counter() - start)


def engine_ceiling(state, bodies: list[dict], profile_top: int) -> dict:
    """engine.recommend in-process, one request after another (no HTTP, no concurrency): req/s, p50/p99, and the
    top functions of a cProfile of the same calls by cumulative time."""
    from liveloop.serving.engine import recommend

    async def run(batch):
        times = []
        for body in batch:
            start = time.perf_counter()
            await recommend(state, body["user_id"], body["k"], recent_events=body["recent_events"])
            times.append(time.perf_counter() - start)
        return times

    asyncio.run(run(bodies[:20]))  # warm-up
    load_before, cpu_before = os.getloadavg()[0], time.process_time()  # all threads: the encode runs in one
    lat = np.array(asyncio.run(run(bodies))) * 1000
    out = {"req_per_s": len(lat) / (lat.sum() / 1000), "p50_ms": float(np.percentile(lat, 50)),
           "p99_ms": float(np.percentile(lat, 99)), "cpu_ms_per_request": 1000 * (time.process_time() - cpu_before) / len(lat),
           "load_avg_1min": [load_before, os.getloadavg()[0]]}
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run(bodies))
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(profile_top)
    out["profile"] = text.getvalue()
    return out


def ranker_stage(state, bodies: list[dict]) -> dict | None:
    """The ranker stage alone, per request: pair features over the `model.rank_candidates` best by retrieval (the set
    /recommend ranks) and one LightGBM predict: the ranker's, or, where validation kept the retrieval order, the CTR
    model's (same features, same kind of model), so a package without a ranker still says what one adds."""
    from liveloop.serving.engine import event_records
    from liveloop.serving.state import build_profile

    ranker, scorer = state.model.ranker, state.scorer()
    if ranker is None or not (ranker.ranks or ranker.has_ctr):
        return None
    predict = ranker.rank_scores if ranker.ranks else ranker.ctr
    times, sizes = [], []
    for body in bodies:
        profile = build_profile(event_records(state, body["recent_events"], body["user_id"]), state.host_of,
                                state.index.now, state.users.window)
        vec = scorer.user_vectors([profile.state])[0]
        rows, _ = state.index.top(vec, state.model.config.rank_candidates)
        start = time.perf_counter()
        predict(scorer.features(profile.state, vec, rows, state.live_hosts(rows), state.index.now.value))
        times.append(time.perf_counter() - start)
        sizes.append(len(rows))
    lat = np.array(times[20:]) * 1000  # the first 20 warm caches
    return {"model": "ranker" if ranker.ranks else "ctr (stand-in)", "candidates": int(np.median(sizes)),
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def median_of(runs: list[dict]) -> dict:
    keys = ("req_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "server_cores_used")
    return {key: float(np.median([r[key] for r in runs])) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000, help="live items wanted at the serve clock")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="client concurrency levels")
    parser.add_argument("--requests", type=int, default=600, help="requests per level and repeat (c=1 uses a third)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each level (medians reported)")
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed from the in-process profile")
    parser.add_argument("--keep", type=Path, default=None,
                        help="workspace folder to keep (default: tmp, removed); one that holds a package is reused")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below: server stopped, tmp removed

    root = args.keep or Path(tempfile.mkdtemp(prefix="liveloop-serve-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    reuse = (root / "params.yaml").exists()
    params = root / "params.yaml" if reuse else world_params(root, args.items)
    results: dict = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "items_wanted": args.items}
    proc = None
    try:
        from liveloop.config import load_config
        from liveloop.serving.engine import load_state

        cfg = load_config(params)
        if cfg.serve.torch_threads:  # everything here uses the server's thread setting (2 threads crawl on a busy box)
            import torch

            torch.set_num_threads(cfg.serve.torch_threads)
        timings, model_path = build_package(params, reuse)  # also exports BENTOML_HOME etc. (open_workspace)
        results["build"] = timings
        env = {**os.environ, "LIVELOOP_PARAMS": str(params)}
        state = load_state(model_path, "bench", cfg.serve, device="cpu")
        live = state.index.item_ids[state.index.available]
        ranker = state.model.ranker
        results.update(live_items=int(len(live)), catalogue_items=int(len(state.index.item_ids)),
                       ranker=bool(ranker is not None and ranker.ranks), torch_threads=cfg.serve.torch_threads)
        print(json.dumps(results), flush=True)
        try:
            bodies = [request_body(10**9 + i, live) for i in range(max(200, args.requests // 3))]
            results["encode_ceiling_rows_per_s"] = encode_ceiling(state, bodies, seconds=8)
            results["engine_in_process"] = engine_ceiling(state, bodies, args.profile_top)
            results["ranker_stage"] = ranker_stage(state, bodies)
        finally:
            state.batcher.close()
        print(json.dumps({k: v for k, v in results.items() if k != "engine_in_process"}), flush=True)
        print(json.dumps({k: v for k, v in results["engine_in_process"].items() if k != "profile"}), flush=True)
        print(results["engine_in_process"]["profile"], flush=True)

        port = free_port()
        proc = start_server(root, env, port)
        results["http"] = {}
        for c in args.concurrency:
            count = args.requests // 3 if c == 1 else args.requests
            asyncio.run(load(port, proc.pid, live, c, min(32, count), offset=10**8))  # warm-up
            runs = []
            for r in range(args.repeats):
                runs.append(asyncio.run(load(port, proc.pid, live, c, count, offset=(r + 1) * 10**7 + c * 10**5)))
                print(json.dumps(runs[-1]), flush=True)
            results["http"][f"c{c}"] = {"median": median_of(runs), "runs": runs}
            print(json.dumps({f"c{c}_median": results["http"][f"c{c}"]["median"]}), flush=True)
    finally:
        if proc is not None:
            stop_server(proc)
        results["load_avg_end"] = os.getloadavg()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
