"""Serving: a real `bentoml serve` on 127.0.0.1 (one start for the module) called over HTTP on every endpoint,
plus fast in-process checks of the pieces (profile rendering, ANN vs exact top-k, row-capped batching).

The world is one hand-made live-commerce day, so answers are checkable: with serve.now = "latest" it is 11:00,
rooms r-kitchen (10-12) and r-mixed (11-13) are live, r-beauty (08-09) is over; every user bought or clicked i000.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from liveloop.data.batches import read_batch, write_batch

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

DAY = "2026-01-05"
CATEGORIES = {
    "kitchen": ["Ceramic Coffee Mug", "Enamel Tea Kettle", "Bamboo Cutting Board", "Cast Iron Skillet",
                "Glass Teapot", "Espresso Cup Set", "Stainless Whisk", "Coffee Grinder", "Porcelain Bowl", "Milk Frother"],
    "shoes": ["Trail Running Shoes", "Leather Ankle Boots", "Canvas Sneakers", "Wool Slippers", "Hiking Boots",
              "Suede Loafers", "Rain Boots", "Sport Sandals", "Platform Sneakers", "Dress Oxfords"],
    "beauty": ["Rose Face Serum", "Matte Lipstick", "Vitamin C Cream", "Hair Repair Oil", "Clay Face Mask",
               "Eyeliner Pencil", "Sunscreen SPF50", "Lavender Hand Cream", "Nail Polish Red", "Makeup Brush Set"],
}
# rooms: (id, title, category, start hour, end hour, item indexes); with serve.now = "latest", now = 11:00,
# so r-kitchen and r-mixed are live and r-beauty (08-09) is over.
ROOMS = [
    ("r-kitchen", "Morning kitchen deals", "kitchen", 10, 12, range(0, 10)),
    ("r-mixed", "Shoes and more", "shoes", 11, 13, range(10, 22)),
    ("r-beauty", "Beauty hour", "beauty", 8, 9, range(22, 30)),
]


def items_table() -> pd.DataFrame:
    rows = []
    for c, (category, titles) in enumerate(CATEGORIES.items()):
        for i, title in enumerate(titles):
            rows.append({"item_id": f"i{c * 10 + i:03d}", "title": title, "description": None, "category": category,
                         "brand": "Acme", "price": 5.0 + 3 * i, "first_seen": pd.Timestamp(DAY)})
    return pd.DataFrame(rows)


def day_batch() -> dict[str, pd.DataFrame]:
    items = items_table()
    ids = list(items["item_id"])
    day = pd.Timestamp(DAY)
    streams = pd.DataFrame([{"stream_id": sid, "host_id": f"h{n}", "title": title, "category": cat,
                             "start": day + pd.Timedelta(hours=s), "end": day + pd.Timedelta(hours=e),
                             "item_ids": [ids[i] for i in idx]} for n, (sid, title, cat, s, e, idx) in enumerate(ROOMS)])
    events = []
    # u-kitchen-* buy kitchen items, u-shoes-* click shoes; item i000 is the best seller.
    for u in range(6):
        for j, (kind, base) in enumerate((("kitchen", 0), ("shoes", 10))):
            user = f"u-{kind}-{u}"
            for n, item in enumerate([base + (u + m) % 8 for m in range(3)] + [0]):
                events.append({"event_id": f"e-{user}-{n}", "ts": day + pd.Timedelta(hours=8, minutes=10 * n + u),
                               "user_id": user, "item_id": ids[item], "stream_id": None,
                               "event_type": "purchase" if kind == "kitchen" else "click", "text": None,
                               "quantity": 1.0 if kind == "kitchen" else None, "price": 9.0})
    events = pd.DataFrame(events)
    users = pd.DataFrame({"user_id": sorted(events["user_id"].unique()), "profile": None})
    return {"items": items, "streams": streams, "users": users, "events": events}


def build_workspace(root: Path, params_source: Path, seq_dim: int = 16) -> Path:
    """Workspace with one accepted day, a fresh model registered + promoted; returns its params.yaml."""
    from liveloop.workspace import open_workspace

    root.mkdir(parents=True, exist_ok=True)
    params = root / "params.yaml"
    shutil.copy(params_source, params)
    cfg, ws = open_workspace(params)
    write_batch(day_batch(), ws.accepted / DAY)
    promote_fresh_model(ws, cfg.model.model_copy(update={"seq_dim": seq_dim}), root / "candidate", seed=0)
    return params


def promote_fresh_model(ws, model_cfg, out_dir: Path, seed: int) -> str:
    """Register and promote a freshly initialised model (a valid model dir) as the champion; returns its version."""
    from liveloop.model.recommender import Recommender
    from liveloop.registry import promote, register

    Recommender.from_config(model_cfg, device="cpu", seed=seed).save(out_dir)
    entry = register(ws, out_dir, parent=None, data_versions={}, params={}, metrics={})
    promote(ws, entry["version"])
    return entry["version"]


LIVE_ITEMS = {f"i{i:03d}" for i in range(22)}  # r-kitchen i000-i009 + r-mixed i010-i021


# ----- fast in-process checks -------------------------------------------------------------------------------------
def test_profile_state_equals_training_state_and_vector():
    """build_profile (serving) gives the same UserState as Histories.from_events(...).state_at (training) and the
    verbs for reasons; the user vectors are compared on the real package in test_served_user_vectors_equal_training."""
    from liveloop.model.history import Histories
    from liveloop.serving.state import build_profile

    batch = day_batch()
    events = batch["events"]
    extra = pd.DataFrame([
        {"event_id": "c1", "ts": pd.Timestamp(DAY) + pd.Timedelta(hours=9), "user_id": "u-kitchen-0", "item_id": "i001",
         "stream_id": "r-kitchen", "event_type": "comment", "text": "love it " * 20, "quantity": None, "price": None},
        {"event_id": "c2", "ts": pd.Timestamp(DAY) + pd.Timedelta(hours=9, minutes=5), "user_id": "u-kitchen-0",
         "item_id": "i002", "stream_id": None, "event_type": "purchase", "text": None, "quantity": -1.0, "price": 9.0},
        {"event_id": "c3", "ts": pd.Timestamp(DAY) + pd.Timedelta(hours=9, minutes=7), "user_id": "u-kitchen-0",
         "item_id": "i003", "stream_id": "r-kitchen", "event_type": "add_to_cart", "text": None, "quantity": None,
         "price": None},
    ])
    events = pd.concat([events, extra], ignore_index=True)
    streams = batch["streams"]
    host_of = dict(zip(streams["stream_id"], streams["host_id"]))
    now = pd.Timestamp(DAY) + pd.Timedelta(hours=11)
    window = 3
    hist = Histories.from_events(events, streams)
    for user_id, frame in events.groupby("user_id"):
        profile = build_profile(frame.to_dict("records"), host_of, now, window)
        expected = hist.state_at(user_id, now.value + 1, window)
        _assert_same_state(profile.state, expected)
    kitchen = build_profile(events[events.user_id == "u-kitchen-0"].to_dict("records"), host_of, now, window)
    assert kitchen.state.host_counts == {"h0": 1.0} and kitchen.state.comments  # room host and comment carried
    assert kitchen.verbs["i003"] == "carted" and "i002" in kitchen.verbs  # the return is no new verb
def _assert_same_state(got, want):
    assert got.tokens == want.tokens
    np.testing.assert_array_equal(got.types, want.types)
    np.testing.assert_allclose(got.ages, want.ages)
    assert got.item_counts == want.item_counts and got.purchase_counts == want.purchase_counts
    assert got.last_days == pytest.approx(want.last_days)
    assert got.host_counts == want.host_counts and got.positives == want.positives
    assert got.comments == want.comments
    assert (np.isnan(got.mean_log_price) and np.isnan(want.mean_log_price)) or got.mean_log_price == pytest.approx(
        want.mean_log_price)


def test_ann_index_agrees_with_exact_top_k_and_follows_upserts():
    from liveloop.serving.index import ItemIndex

    rng = np.random.default_rng(0)
    n, d = 2000, 32
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = pd.DataFrame({"item_id": [f"x{i}" for i in range(n)], "title": "t", "description": None, "category": "c",
                          "brand": None, "price": 1.0, "first_seen": pd.Timestamp(DAY)})
    streams = pd.DataFrame({"stream_id": ["s"], "host_id": ["h"], "title": ["room"], "category": ["c"],
                            "start": [pd.Timestamp(DAY)], "end": [pd.Timestamp(DAY) + pd.Timedelta(hours=2)],
                            "item_ids": [list(items["item_id"][:1500])]})
    now = pd.Timestamp(DAY) + pd.Timedelta(hours=1)
    exact = ItemIndex.build(items, vectors, streams, now, ann_threshold=10**6)
    ann = ItemIndex.build(items, vectors, streams, now, ann_threshold=100)
    assert exact.ann is None and ann.ann is not None and exact.n_live == ann.n_live == 1500
    hits = [len(set(exact.top(q, 10)[0]) & set(ann.top(q, 10)[0])) for q in vectors[:50]]
    assert np.mean(hits) >= 9.5  # HNSW recall@10
    # x7 goes offline, x1900 (not in any room) comes online: both indexes must follow without a rebuild.
    change = ({"x7": False, "x1900": True}, items.iloc[[7, 1900]], vectors[[7, 1900]])
    for index in (exact.with_items(change[1], change[2], change[0], {}), ann.with_items(change[1], change[2], change[0], {})):
        assert index.top(vectors[1900], 1)[0][0] == 1900
        assert 7 not in index.top(vectors[7], 20)[0]


def test_batcher_coalesces_concurrent_encodes_with_a_row_cap():
    from liveloop.serving.batching import EncodeBatcher

    calls = []

    def encode(texts):
        calls.append(len(texts))
        time.sleep(0.02)
        return np.array([[len(t)] for t in texts], dtype=np.float32)

    async def run():
        batcher = EncodeBatcher(encode, max_rows=8)
        out = await asyncio.gather(*(batcher.encode(["a" * i]) for i in range(1, 21)))
        batcher.close()
        return out

    out = asyncio.run(run())
    assert [int(o[0][0]) for o in out] == list(range(1, 21))  # every caller gets its own row back
    assert max(calls) <= 8 and sum(calls) == 20 and len(calls) < 20  # batched, capped in rows


# ----- the real server --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(root: Path) -> dict:
    return {**os.environ, "BENTOML_HOME": str(root / "bentoml-home"), "LIVELOOP_PARAMS": str(root / "params.yaml"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "true"}


def _package(root: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "liveloop"), "package", "--params", str(root / "params.yaml"), *args],
                          env=_env(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    params = build_workspace(root, REPO / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["serve"].update({"now": "latest", "reload_poll_seconds": 0.5, "max_k": 50, "max_body_bytes": 200_000})
    params.write_text(yaml.safe_dump(raw))
    out = _package(root)  # the real CLI: model store + bento build, offline
    assert "bento liveloop:" in out and (root / "bentoml-home" / "bentos" / "liveloop").is_dir()
    from tests.integration.conftest import running

    port = _free_port()
    cmd = [str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender", "--host", "127.0.0.1",
           "--port", str(port)]
    with running(cmd, root, _env(root), f"http://127.0.0.1:{port}/readyz", root / "server.log"), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield {"client": client, "root": root, "port": port}


def _stored_package(server, version: str) -> Path:
    """The model store folder the service loaded for `version`."""
    from liveloop.serving.package import PACKAGE_FILE

    stored = [p for p in (server["root"] / "bentoml-home" / "models" / "liveloop-recommender").iterdir()
              if (p / PACKAGE_FILE).is_file() and json.loads((p / PACKAGE_FILE).read_text())["model_version"] == version]
    assert len(stored) == 1
    return stored[0]


def _post(server, route: str, body) -> httpx.Response:
    return server["client"].post(route, json=body)


@pytest.mark.slow
def test_health_readiness_and_metrics(server):
    client = server["client"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    ready = client.get("/v1/ready").json()
    assert ready["ready"] and ready["model_version"] == "v0001" and ready["live_items"] == len(LIVE_ITEMS)
    assert ready["now"] == f"{DAY} 11:00:00"
    _post(server, "/recommend", {"user_id": "u-kitchen-1", "k": 3})
    assert 'bentoml_service_request_total{endpoint="/recommend"' in client.get("/metrics").text


@pytest.mark.slow
def test_served_user_vectors_equal_training(server):
    """The packaged model loaded like the service (load_state -> UserStates -> batcher -> ServingState.scorer) gives
    every user the UserState and user vector that training/evaluation compute (Histories + CatalogueScorer)."""
    from liveloop.config import load_config
    from liveloop.model.history import Histories
    from liveloop.model.ranker import Popularity
    from liveloop.model.recommender import Recommender
    from liveloop.model.scoring import CatalogueScorer
    from liveloop.serving.engine import load_state, user_profile
    from liveloop.serving.package import MODEL_DIR

    stored = _stored_package(server, "v0001")
    state = load_state(stored, "v0001", load_config(server["root"] / "params.yaml").serve, device="cpu")
    batch = day_batch()
    users = sorted(batch["events"]["user_id"].unique())
    only_seen = [{"user_id": "viewer", "item_id": "i001", "stream_id": "r-kitchen", "event_type": "impression",
                  "ts": pd.Timestamp(DAY) + pd.Timedelta(hours=10)}]  # no behaviour: no profile
    try:
        async def profiles():
            return [await user_profile(state, u, None) for u in users], await user_profile(state, "viewer", only_seen)

        served, (no_profile, no_profile_vector) = asyncio.run(profiles())
    finally:
        state.batcher.close()
    now = pd.Timestamp(DAY) + pd.Timedelta(hours=11)
    assert state.index.now == now
    rec = Recommender.load(stored / MODEL_DIR, device="cpu")
    hist = Histories.from_events(batch["events"], batch["streams"])
    scorer = CatalogueScorer.from_items(rec, batch["items"], Popularity.from_histories(hist), batch["streams"])
    window = rec.config.history_window
    expected = [hist.state_at(u, now.value + 1, window) for u in users]
    for (profile, _), want in zip(served, expected):
        _assert_same_state(profile.state, want)
    np.testing.assert_allclose(np.stack([v for _, v in served]), scorer.user_vectors(expected), rtol=1e-4, atol=1e-5)
    # a viewer with no behaviour gets the vector training and evaluation give a user without events
    from liveloop.model.history import EMPTY_STATE

    assert no_profile is None
    np.testing.assert_allclose(no_profile_vector, scorer.user_vectors([EMPTY_STATE])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_recommend_known_user_gets_live_items_with_reasons(server):
    body = _post(server, "/recommend", {"user_id": "u-kitchen-1", "k": 5}).json()
    items = body["items"]
    assert body["cold_start"] is False and len(items) == 5
    assert {i["item_id"] for i in items} <= LIVE_ITEMS  # nothing from the room that is over
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert all(i["reason"].startswith(("because you bought", "you bought")) for i in items)
    in_room = _post(server, "/recommend", {"user_id": "u-kitchen-1", "k": 50, "stream_id": "r-mixed"}).json()["items"]
    assert {i["item_id"] for i in in_room} == {f"i{i:03d}" for i in range(10, 22)}


@pytest.mark.slow
def test_cold_start_is_the_models_no_history_order_and_recent_events_count(server):
    """A stranger gets what training and evaluation give a user without events (one cold path, not a popularity
    list of the service's own); one recent purchase turns it into a personal answer."""
    from liveloop.model.history import EMPTY_STATE, Histories
    from liveloop.model.ranker import Popularity
    from liveloop.model.recommender import Recommender
    from liveloop.model.scoring import CatalogueScorer
    from liveloop.serving.package import MODEL_DIR

    body = _post(server, "/recommend", {"user_id": "stranger", "k": len(LIVE_ITEMS)}).json()
    assert body["cold_start"] is True
    assert all(i["reason"] == "picked for new viewers from the rooms live now" for i in body["items"])
    batch = day_batch()
    rec = Recommender.load(_stored_package(server, "v0001") / MODEL_DIR, device="cpu")
    scorer = CatalogueScorer.from_items(rec, batch["items"], Popularity.from_histories(
        Histories.from_events(batch["events"], batch["streams"])), batch["streams"])
    live = sorted(LIVE_ITEMS)
    rows = np.array([scorer.table.row_of[i] for i in live])
    expected = scorer.scores(EMPTY_STATE, scorer.user_vectors([EMPTY_STATE])[0], rows, None,
                             (pd.Timestamp(DAY) + pd.Timedelta(hours=11)).value)
    served = {i["item_id"]: i["score"] for i in body["items"]}
    assert set(served) == LIVE_ITEMS
    np.testing.assert_allclose([served[i] for i in live], expected, rtol=1e-4, atol=1e-4)
    events = [{"item_id": "i012", "event_type": "purchase", "quantity": 1}]
    body = _post(server, "/recommend", {"user_id": "stranger", "k": 4, "recent_events": events}).json()
    assert body["items"][0]["item_id"] == "i012" and body["items"][0]["reason"] == "you bought this before"
    assert any(i["reason"] == "because you bought Canvas Sneakers" for i in body["items"][1:])


@pytest.mark.slow
def test_score_returns_ctr_probabilities_in_request_order(server):
    ids = ["i005", "i000", "i029"]
    body = _post(server, "/score", {"user_id": "u-shoes-2", "item_ids": ids}).json()
    assert [s["item_id"] for s in body["scores"]] == ids
    assert all(0.0 < s["ctr"] < 1.0 for s in body["scores"])


BAD_REQUESTS = [
    ("/recommend", b'{"user_id": "a", "k": 3', 400, "Invalid JSON"),
    ("/recommend", {"k": 3}, 400, "user_id"),
    ("/recommend", {"user_id": 7, "k": 3}, 400, "valid string"),
    ("/recommend", {"user_id": "a", "k": "ten"}, 400, "valid integer"),
    ("/recommend", {"user_id": "a", "k": 0}, 400, "greater than 0"),
    ("/recommend", {"user_id": "a", "k": 51}, 400, "k must be at most 50"),
    ("/recommend", {"user_id": "a", "stream_id": "no-such-room"}, 400, "unknown stream_id 'no-such-room'"),
    ("/recommend", {"user_id": "a", "stream_id": "r-beauty"}, 400, "not live now"),
    ("/recommend", {"user_id": "a", "recent_events": []}, 400, "at least 1 item"),
    ("/recommend", {"user_id": "a", "recent_events": [{"item_id": "ghost", "event_type": "click"}]}, 400, "ghost"),
    ("/score", {"user_id": "a", "item_ids": ["i000", "ghost"]}, 400, "unknown item_id(s): ['ghost']"),
    ("/score", {"user_id": "a", "item_ids": []}, 400, "at least 1 item"),
    ("/feedback", {"events": []}, 400, "at least 1 item"),
    ("/feedback", {"events": [{"user_id": "a", "item_id": "i000", "event_type": "like"}]}, 400, "event_type"),
    ("/feedback", {"events": [{"user_id": "a", "item_id": "i000", "event_type": "click", "ts": "yesterday"}]}, 400, "ts"),
    ("/feedback", {"events": [{"user_id": "a", "item_id": "i000", "event_type": "click", "stream_id": "zz"}]}, 400, "zz"),
    ("/items", {"items": [{"item_id": "n9", "title": "X", "category": "c", "price": -1}]}, 400, "price"),
    ("/items", {"items": [{"item_id": "n9", "title": "X", "category": "c", "price": 1, "stream_id": "zz"}]}, 400, "zz"),
    ("/feedback", {"events": [{"user_id": "a", "item_id": "i000", "event_type": "click", "text": "x" * 1900}] * 120},
     413, "larger than 200000 bytes"),
]


@pytest.mark.slow
@pytest.mark.parametrize("route,body,status,message", BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_problem(server, route, body, status, message):
    client = server["client"]
    if isinstance(body, bytes):
        response = client.post(route, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(route, json=body)
    assert response.status_code == status, response.text
    assert message in response.text


@pytest.mark.slow
def test_feedback_is_logged_and_the_next_recommend_reflects_it(server):
    before = _post(server, "/recommend", {"user_id": "newcomer", "k": 3}).json()
    assert before["cold_start"] is True
    event = {"user_id": "newcomer", "item_id": "i013", "event_type": "purchase", "quantity": 2, "price": 9.5}
    ack = _post(server, "/feedback", {"events": [event]}).json()
    assert ack["accepted"] == 1
    after = _post(server, "/recommend", {"user_id": "newcomer", "k": 3}).json()
    assert after["cold_start"] is False
    assert after["items"][0] == {**after["items"][0], "item_id": "i013", "reason": "you bought this before"}
    lines = [json.loads(l) for l in (server["root"] / "data" / "feedback" / "events.jsonl").read_text().splitlines()]
    assert any(l["event_id"] == ack["event_ids"][0] and l["quantity"] == 2.0 for l in lines)


@pytest.mark.slow
def test_concurrent_feedback_loses_no_event_and_exports_as_a_batch(server):
    from liveloop.serving import export_feedback
    from liveloop.workspace import Workspace

    def send(worker: int) -> list[str]:
        ids = []
        with httpx.Client(base_url=f"http://127.0.0.1:{server['port']}", timeout=60) as client:
            for n in range(8):
                events = [{"user_id": f"load-{worker}", "item_id": f"i{(worker + n + j) % 22:03d}", "event_type": "click",
                           "event_id": f"ev-{worker}-{n}-{j}"} for j in range(5)]
                response = client.post("/feedback", json={"events": events})
                assert response.status_code == 200, response.text
                ids += response.json()["event_ids"]
        return ids

    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda w=w: results.append(send(w))) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = {i for ids in results for i in ids}
    assert len(sent) == 12 * 8 * 5
    logged = [json.loads(l) for l in (server["root"] / "data" / "feedback" / "events.jsonl").read_text().splitlines()]
    assert sent <= {l["event_id"] for l in logged if l["kind"] == "event"}
    batch = export_feedback(Workspace(server["root"], server["root"] / ".liveloop"), DAY)
    tables = read_batch(batch)
    assert sent <= set(tables["events"]["event_id"])
    assert set(tables["events"]["item_id"]) <= set(tables["items"]["item_id"])  # self-contained


@pytest.mark.slow
def test_item_upsert_is_recommendable_at_once_and_availability_applies(server):
    new = {"item_id": "n1", "title": "Trail Running Shoes Pro", "category": "shoes", "brand": "Acme", "price": 80,
           "stream_id": "r-mixed"}
    ack = _post(server, "/items", {"items": [new]}).json()
    assert ack["live_items"] == len(LIVE_ITEMS) + 1
    in_room = _post(server, "/recommend", {"user_id": "u-shoes-1", "k": 50, "stream_id": "r-mixed"}).json()["items"]
    assert "n1" in {i["item_id"] for i in in_room}
    assert _post(server, "/score", {"user_id": "u-shoes-1", "item_ids": ["n1"]}).status_code == 200
    _post(server, "/items", {"items": [{"item_id": "i000", "title": "Ceramic Coffee Mug", "category": "kitchen",
                                       "price": 5.0, "available": False}]})
    cold = _post(server, "/recommend", {"user_id": "someone-else", "k": 50}).json()["items"]
    assert "i000" not in {i["item_id"] for i in cold} and "n1" in {i["item_id"] for i in cold}


@pytest.mark.slow
def test_hot_reload_during_traffic_drops_no_request(server):
    from liveloop.config import load_config
    from liveloop.workspace import Workspace

    root = server["root"]
    cfg = load_config(root / "params.yaml")
    versions, failures, stop = [], [], threading.Event()

    def traffic():
        with httpx.Client(base_url=f"http://127.0.0.1:{server['port']}", timeout=60) as client:
            while not stop.is_set():
                r = client.post("/recommend", json={"user_id": "u-kitchen-2", "k": 5})
                (versions if r.status_code == 200 else failures).append(r.json().get("model_version", r.text))

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        promote_fresh_model(Workspace(root, root / ".liveloop"), cfg.model.model_copy(update={"seq_dim": 16}),
                            root / "candidate-2", seed=1)
        _package(root, "--no-build")
        deadline = time.time() + 120
        while server["client"].get("/v1/ready").json()["model_version"] != "v0002":
            assert time.time() < deadline, "new champion not picked up in 120 s"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert failures == []
    assert "v0001" in versions and versions[-1] == "v0002"
    # session state survives the swap: feedback and upserts made before it
    after = _post(server, "/recommend", {"user_id": "newcomer", "k": 3}).json()
    assert after["model_version"] == "v0002" and after["items"][0]["item_id"] == "i013"
    in_room = _post(server, "/recommend", {"user_id": "u-shoes-1", "k": 50, "stream_id": "r-mixed"}).json()["items"]
    assert "n1" in {i["item_id"] for i in in_room}
