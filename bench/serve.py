"""Serving benchmark: a real `bentoml serve` over loopback, against (a) the raw in-process ceiling and (b) a
cross-encoder baseline, at 1k / 10k / 100k live items.

Every request is POST /recommend for a new user with two recent purchases, so each one pays the full path: request
validation, user-state building, one user-tower encode (adaptively batched), top-k over all live items, repeat-bonus
rescoring and reasons. Nothing is served from the user cache.

(a) raw ceiling: the same model's user-tower encode in-process at batch 64 (rows/s = the best req/s one worker
    could reach if HTTP, retrieval and everything else were free).
(b) cross-encoder: the transformer run on every (user, candidate) pair, here 1k candidates per request: the common
    BERT-recommender approach.

Catalogs: 1,000 item texts are encoded for real; larger catalogs tile those vectors with small noise (retrieval cost
depends on the count, not the content), so building a 100k index takes seconds instead of a CPU-hour.

    .venv/bin/python bench/serve.py --out /tmp/serve_bench.json            # everything (about 15 min on a shared 2-core box)
    .venv/bin/python bench/serve.py --sizes 1000 --requests 200 --error-requests 0   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASE_ITEMS = 1000
CROSS_PAIRS = 256
CATEGORIES = ["kitchen", "shoes", "beauty", "toys", "garden", "phones", "books", "sports"]
ADJECTIVES = ["red", "compact", "premium", "vintage", "smart", "wireless", "organic", "travel", "mini", "deluxe"]
NOUNS = ["mug", "kettle", "sneakers", "serum", "lamp", "speaker", "backpack", "jacket", "blender", "charger",
         "notebook", "yoga mat", "watch"]
NOW = pd.Timestamp("2026-01-05 12:00:00")


def base_items() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(BASE_ITEMS):
        title = f"{ADJECTIVES[i % 10]} {NOUNS[(i // 10) % 13]} {i}"
        rows.append({"item_id": f"b{i}", "title": title.title(), "description": None,
                     "category": CATEGORIES[i % len(CATEGORIES)], "brand": f"brand{i % 37}",
                     "price": float(rng.uniform(1, 300)), "first_seen": NOW - pd.Timedelta(days=1)})
    return pd.DataFrame(rows)


def catalog(base: pd.DataFrame, base_vectors: np.ndarray, text_vectors: np.ndarray, n: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """n items: the base items tiled, ids unique; (items, item-tower vectors jittered and renormalised, frozen text
    vectors tiled: what the user tower reads for them)."""
    rng = np.random.default_rng(n)
    idx = np.arange(n) % len(base)
    items = base.iloc[idx].reset_index(drop=True).copy()
    items["item_id"] = [f"it{i}" for i in range(n)]
    vectors = base_vectors[idx] + rng.normal(scale=0.05, size=(n, base_vectors.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return items, vectors.astype(np.float32), text_vectors[idx]


def save_package(model_dir: Path, items: pd.DataFrame, vectors: np.ndarray, base: np.ndarray, serve_cfg) -> Path:
    """Write a packaged model in the store layout liveloop.serving.package defines; returns its folder."""
    import bentoml
    from safetensors.numpy import save_file

    from liveloop.serving import package as pkg

    streams = pd.DataFrame({"stream_id": ["room-1"], "host_id": ["h1"], "title": ["Mega live sale"],
                            "category": ["mixed"], "start": [NOW], "end": [NOW + pd.Timedelta(hours=2)],
                            "item_ids": [list(items["item_id"])]})
    history = pd.DataFrame({"event_id": ["e0"], "ts": [NOW - pd.Timedelta(hours=1)], "user_id": ["seed-user"],
                            "item_id": [items["item_id"].iat[0]], "stream_id": ["room-1"], "event_type": ["purchase"],
                            "text": [None], "quantity": [1.0], "price": [9.0]})
    with bentoml.models.create(pkg.MODEL_NAME, labels={"bench_items": str(len(items))}) as stored:
        out = Path(stored.path)
        shutil.copytree(model_dir, out / pkg.MODEL_DIR)
        save_file({"item_vectors": vectors, "item_base": np.ascontiguousarray(base, np.float32)}, str(out / pkg.INDEX_FILE))
        items.to_parquet(out / pkg.ITEMS_FILE, index=False)
        streams.to_parquet(out / pkg.STREAMS_FILE, index=False)
        streams[["stream_id", "host_id"]].to_parquet(out / pkg.ROOMS_FILE, index=False)
        history.to_parquet(out / pkg.HISTORY_FILE, index=False)
        (out / pkg.POPULARITY_FILE).write_text(json.dumps({items["item_id"].iat[0]: 1.0}))
        (out / pkg.PACKAGE_FILE).write_text(json.dumps({"model_version": f"bench-{len(items)}",
                                                        "serve": serve_cfg.model_dump(mode="json")}))
    return Path(bentoml.models.get(stored.tag).path)  # the store folder (stored.path was the staging dir)


def request_body(i: int, n_items: int) -> dict:
    rng = np.random.default_rng(i)
    events = [{"item_id": f"it{int(j)}", "event_type": "purchase", "quantity": 1}
              for j in rng.integers(0, n_items, size=2)]
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


async def load(port: int, n_items: int, concurrency: int, requests: int, offset: int) -> dict:
    """Closed-loop load: `concurrency` keep-alive clients, `requests` in all; latency per request, errors counted."""
    latencies, errors = [], []
    counter = iter(range(requests))

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                body = request_body(offset + i, n_items)
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

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": requests, "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "req_per_s": requests / wall, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, env: dict, port: int) -> subprocess.Popen:
    import httpx

    log = open(root / f"server-{port}.log", "w")
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(root / f'server-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server not ready in 300 s: {(root / f'server-{port}.log').read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def raw_ceiling(state, states: list, seconds: float) -> float:
    """In-process user-tower encode at batch 64 through the serving state's scorer: rows per second."""
    scorer = state.scorer()
    scorer.user_vectors(states[:64])
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        scorer.user_vectors(states[done % len(states): done % len(states) + 64] or states[:64])
        done += 64
    return done / (time.perf_counter() - start)


def server_user_states(state, n: int) -> list:
    """The exact user states the server builds for the benchmark's requests (build_profile on their events)."""
    from liveloop.serving.state import build_profile

    states = []
    for i in range(n):
        events = [{"user_id": f"bench-{i}", "stream_id": None, "text": None, "price": None, **e, "ts": NOW}
                  for e in request_body(i, len(state.index.item_ids))["recent_events"]]
        states.append(build_profile(events, state.host_of, NOW, state.users.window).state)
    return states


def user_text(items: pd.DataFrame, i: int) -> str:
    """A user side for the cross-encoder: the titles of the request's purchases."""
    titles = dict(zip(items["item_id"], items["title"]))
    return "bought: " + "; ".join(titles[e["item_id"]] for e in request_body(i, len(items))["recent_events"])


def cross_encoder(model, user_text: str, item_texts: list[str], batch_size: int = 128) -> float:
    """Seconds for the transformer over every (user, candidate) pair given: a cross-encoder request."""
    import torch

    from liveloop.model.vectors import MAX_TOKENS

    encoder, tokenizer = model.encoder._model, model.encoder._tokenizer  # the frozen text encoder as a cross-encoder
    encoder.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(item_texts), batch_size):
            chunk = item_texts[i:i + batch_size]
            batch = tokenizer([user_text] * len(chunk), chunk, padding=True, truncation=True,
                              max_length=2 * MAX_TOKENS, return_tensors="pt")
            encoder(**batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000], help="live items per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64], help="client concurrency levels")
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level (c=1 uses a third)")
    parser.add_argument("--error-requests", type=int, default=10_000, help="requests at c=32 on the 10k catalog (0 = skip)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below: servers stopped, tmp removed

    from liveloop.config import load_config
    from liveloop.model.recommender import Recommender
    from liveloop.model.text import item_texts
    from liveloop.serving.engine import load_state

    root = Path(tempfile.mkdtemp(prefix="liveloop-serve-bench-"))
    cfg = load_config(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["paths"] = {"root": str(root), "state": str(root / ".liveloop")}
    raw["serve"]["now"] = "latest"
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "LIVELOOP_PARAMS": str(root / "params.yaml"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true",
           "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update({k: env[k] for k in ("BENTOML_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    results: dict = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "runs": [],
                     "torch_threads": cfg.serve.torch_threads}
    if cfg.serve.torch_threads:  # the in-process ceiling uses the server's thread setting
        import torch

        torch.set_num_threads(cfg.serve.torch_threads)
    try:
        model = Recommender.from_config(cfg.model, seed=0)
        model.save(root / "model")
        base = base_items()
        texts = list(item_texts(base).values())
        t0 = time.perf_counter()
        text_vectors = model.base_vectors(texts)
        base_vectors = model.item_vectors(text_vectors)
        results["item_encode_per_s"] = len(texts) / (time.perf_counter() - t0)
        # 1k pairs cost about a minute on a shared 2-core box: time CROSS_PAIRS and scale linearly (batches of 128)
        results["cross_encoder_s_per_request_1k"] = (
            cross_encoder(model, user_text(catalog(base, base_vectors, text_vectors, BASE_ITEMS)[0], 0),
                          texts[:CROSS_PAIRS]) * BASE_ITEMS / CROSS_PAIRS)
        print(json.dumps({k: v for k, v in results.items() if k != "runs"}), flush=True)

        for n in args.sizes:
            items, vectors, item_base = catalog(base, base_vectors, text_vectors, n)
            stored = save_package(root / "model", items, vectors, item_base, cfg.serve)
            # the ceiling right before the load runs, so both see about the same CPU contention
            state = load_state(stored, f"bench-{n}", cfg.serve, device="cpu")
            try:
                ceiling = raw_ceiling(state, server_user_states(state, 256), seconds=8)
            finally:
                state.batcher.close()
            results["runs"].append({"items": n, "raw_ceiling_rows_per_s": ceiling})
            print(json.dumps(results["runs"][-1]), flush=True)
            port = free_port()
            proc = start_server(root, env, port)
            try:
                for c in args.concurrency:
                    count = args.requests // 3 if c == 1 else args.requests
                    asyncio.run(load(port, n, c, min(32, count), offset=10**8))  # warm-up
                    run = {"items": n, **asyncio.run(load(port, n, c, count, offset=n * 1000 + c * 10**6))}
                    results["runs"].append(run)
                    print(json.dumps(run), flush=True)
                if n == 10_000 and args.error_requests:
                    run = {"items": n, "error_run": True,
                           **asyncio.run(load(port, n, 32, args.error_requests, offset=5 * 10**7))}
                    results["runs"].append(run)
                    print(json.dumps(run), flush=True)
            finally:
                stop_server(proc)
    finally:
        results["load_avg_end"] = os.getloadavg()
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
