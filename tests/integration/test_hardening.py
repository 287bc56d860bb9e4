"""What real clients send, against one real `bentoml serve` (conftest.guarded_server: write token on, 200 kB bodies):
who may write, content types, oversized bodies however framed, hostile numbers and dates, no partial state after a
failed request, property-based fuzz of every endpoint (hypothesis), an OpenAPI-driven run (schemathesis on
/docs.json) with no 5xx, a refused non-loopback bind without a token, and a SIGKILL during /feedback traffic that
loses no acknowledged event (last: it kills the server).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveloop.data.batches import read_batch
from liveloop.data.schema import EVENT_TYPES
from liveloop.serving.feedback import read_log
from liveloop.serving.guard import MIN_TOKEN_LENGTH, TOKEN_ENV, bind_problem, content_type_problem
from tests.integration.conftest import BIN
from tests.integration.test_serving import DAY, LIVE_ITEMS, _env

pytestmark = pytest.mark.slow
JSON = {"content-type": "application/json"}
CLICK = {"user_id": "h-user", "item_id": "i013", "event_type": "click"}
NEW_ITEM = {"item_id": "h-new", "title": "Linen Summer Dress", "category": "dresses", "price": 39.0}


def _post(server, route: str, body, headers=None, auth: bool = True) -> httpx.Response:
    """POST raw bytes (or JSON that may hold NaN/Infinity, as careless clients write it)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {**JSON, **(server["auth"] if auth else {}), **(headers or {})}
    return server["client"].post(route, content=content, headers=sent)


def _state(server) -> tuple[int, dict]:
    """What a write could change: the feedback log's size and the catalogue counts."""
    log = server["feedback_log"]
    ready = server["client"].get("/v1/ready").json()
    return (log.stat().st_size if log.exists() else 0), {k: ready[k] for k in ("items", "live_items", "model_tag")}


# ----- in-process rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host,token,refused", [
    ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False), ("127.0.0.2", None, False),
    ("0.0.0.0", None, True), ("::", None, True), ("10.1.2.3", None, True), ("0.0.0.0", "x" * 32, False),
])
def test_bind_rule(host, token, refused):
    problem = bind_problem(host, token)
    assert (problem is not None) == refused
    if refused:
        assert host in problem and TOKEN_ENV in problem


@pytest.mark.parametrize("value,status", [
    ("application/json", None), ("Application/JSON; charset=UTF-8", None), ('application/json; charset="utf-8"', None),
    ("application/problem+json", None), (None, 415), ("", 415), ("text/plain", 415), ("multipart/form-data", 415),
    ("application/x-www-form-urlencoded", 415), ("application/json; charset=latin-1", 415), ("json", 400),
    (";;;", 400), ("application/json; =x", 400), ("a/b/c", 400),
])
def test_content_type_rule(value, status):
    problem = content_type_problem(value)
    assert (problem[0] if problem else None) == status


# ----- who may write -------------------------------------------------------------------------------------------
def test_writes_need_the_bearer_token_reads_stay_open(guarded_server):
    server = guarded_server
    before = _state(server)
    for route, body in (("/feedback", {"events": [CLICK]}), ("/items", {"items": [NEW_ITEM]})):
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": server["token"]},
                        {"Authorization": f"Basic {server['token']}"}):
            response = _post(server, route, body, headers=headers, auth=False)
            assert response.status_code == 401, (route, headers, response.text)
            assert "Bearer" in response.json()["error"] and response.headers["www-authenticate"].startswith("Bearer")
            assert server["token"] not in response.text
    assert _state(server) == before  # a refused write changed nothing
    assert _post(server, "/recommend", {"user_id": "u-kitchen-1", "k": 3}, auth=False).status_code == 200
    assert _post(server, "/score", {"user_id": "u-kitchen-1", "item_ids": ["i000"]}, auth=False).status_code == 200
    assert server["client"].get("/v1/ready").status_code == 200
    ack = _post(server, "/feedback", {"events": [CLICK]})
    assert ack.status_code == 200 and ack.json()["accepted"] == 1
    assert server["token"] not in server["log"].read_text()  # never logged, neither refused nor accepted


def test_bind_beyond_loopback_without_a_token_refuses_to_start(guarded_server):
    root = guarded_server["root"]
    for extra, words in (({}, f"without {TOKEN_ENV}"), ({TOKEN_ENV: "short"}, f"at least {MIN_TOKEN_LENGTH}")):
        env = {k: v for k, v in _env(root).items() if k != TOKEN_ENV} | extra
        done = subprocess.run([str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender",
                               "--host", "0.0.0.0", "--port", "0"], cwd=root, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode != 0
        assert words in done.stderr + done.stdout, (done.stdout + done.stderr)[-2000:]
        assert "short" not in done.stderr or not extra  # the token itself is not echoed (only its rule)


# ----- bodies --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type,status", [
    ("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("multipart/form-data; boundary=xx", 415),
    ("application/xml", 415), (";;;===", 400), ("application/json; charset=latin-1", 415),
])
def test_unsupported_or_malformed_content_type(guarded_server, content_type, status):
    before = _state(guarded_server)
    response = _post(guarded_server, "/feedback", {"events": [CLICK]}, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert any(word in response.json()["error"] for word in ("content-type", "charset"))
    assert _state(guarded_server) == before


def test_oversized_body_gets_413_declared_or_chunked(guarded_server):
    server = guarded_server
    before = _state(server)
    event = {**CLICK, "event_type": "comment", "text": "x" * 1900}
    big = json.dumps({"events": [event] * 120}).encode()  # ~240 kB
    declared = _post(server, "/feedback", big)
    assert declared.status_code == 413 and "larger than 200000 bytes" in declared.text

    def chunks(data: bytes):
        for start in range(0, len(data), 16_384):
            yield data[start:start + 16_384]

    headers = {**JSON, **server["auth"]}
    with httpx.Client(base_url=server["client"].base_url, timeout=60) as client:  # a connection of its own
        streamed = client.post("/feedback", content=chunks(big), headers=headers)  # no length: chunked
    assert streamed.status_code == 413 and "larger than 200000 bytes" in streamed.text
    assert _state(server) == before
    small = json.dumps({"events": [CLICK]}).encode()
    with httpx.Client(base_url=server["client"].base_url, timeout=60) as client:
        assert client.post("/feedback", content=chunks(small), headers=headers).status_code == 200


# ----- numbers and dates ---------------------------------------------------------------------------------------
def _future(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


BAD_VALUES = [  # (route, body, words the 400 must hold)
    ("/feedback", {"events": [{**CLICK, "quantity": float("inf")}]}, ["quantity", "finite"]),
    ("/feedback", {"events": [{**CLICK, "quantity": float("nan")}]}, ["quantity", "finite"]),
    ("/feedback", b'{"events": [{"user_id": "h", "item_id": "i013", "event_type": "click", "quantity": 1e400}]}',
     ["quantity", "finite"]),
    ("/feedback", {"events": [{**CLICK, "quantity": 1e300}]}, ["quantity", "100000"]),
    ("/feedback", {"events": [{**CLICK, "quantity": -2e5}]}, ["quantity", "-100000"]),
    ("/feedback", {"events": [{**CLICK, "quantity": 0}]}, ["quantity", "quantity 0"]),
    ("/feedback", {"events": [{**CLICK, "price": 0}]}, ["price", "greater than 0"]),
    ("/feedback", {"events": [{**CLICK, "price": float("-inf")}]}, ["price", "finite"]),
    ("/feedback", {"events": [{**CLICK, "price": 1e7}]}, ["price", "1000000"]),
    ("/feedback", {"events": [{**CLICK, "ts": "0001-01-01T00:00:00"}]}, ["ts", "outside 1970-01-01..2262-04-10"]),
    ("/feedback", {"events": [{**CLICK, "ts": "1969-12-31T23:59:59"}]}, ["ts", "outside 1970-01-01"]),
    ("/feedback", {"events": [{**CLICK, "ts": "9999-12-31T23:59:59+00:00"}]}, ["ts", "outside"]),
    ("/feedback", {"events": [{**CLICK, "ts": "2262-04-11T23:00:00-05:00"}]}, ["ts", "outside"]),
    ("/feedback", {"events": [{**CLICK, "ts": 99999999999999}]}, ["ts", "outside"]),
    ("/feedback", {"events": [{**CLICK, "ts": _future(3)}]}, ["ts", "ahead of the wall clock"]),
    ("/feedback", {"events": [{**CLICK, "ts": "2026-02-30T10:00:00"}]}, ["ts"]),
    ("/feedback", {"events": [{**CLICK, "event_type": "comment"}]}, ["comment event needs its text"]),
    ("/feedback", {"events": [{**CLICK, "event_type": "comment", "text": ""}]}, ["text", "at least 1"]),
    ("/items", {"items": [{**NEW_ITEM, "price": float("inf")}]}, ["price", "finite"]),
    ("/items", {"items": [{**NEW_ITEM, "price": 0}]}, ["price", "greater than 0"]),
    ("/items", {"items": [{**NEW_ITEM, "price": 2e6}]}, ["price", "1000000"]),
    ("/items", {"items": [{**NEW_ITEM, "first_seen": "0001-01-01T00:00:00"}]}, ["first_seen", "outside"]),
    ("/items", {"items": [{**NEW_ITEM, "description": ""}]}, ["description", "at least 1"]),
    ("/recommend", {"user_id": "h", "recent_events": [{"item_id": "i013", "event_type": "click", "ts": "0001-01-01"}]},
     ["recent_events", "ts", "outside"]),
    ("/recommend", {"user_id": "h", "recent_events": [{"item_id": "i013", "event_type": "purchase",
                                                       "quantity": float("nan")}]}, ["quantity", "finite"]),
    ("/recommend", {"user_id": "h", "k": 10**30}, ["k must be at most 50"]),
    ("/recommend", {"user_id": "h", "k": 2.5}, ["k"]),
    ("/recommend", {"user_id": "h", "k": float("inf")}, ["k"]),
    ("/recommend", b"[" * 5000 + b"]" * 5000, ["Invalid JSON"]),
    ("/recommend", b'{"user_id": "\xff"}', ["Invalid JSON"]),
    ("/items", b'{"items": [{"item_id": "x", "title": "\\ud800", "category": "c", "price": 1}]}', ["Invalid JSON"]),
]


@pytest.mark.parametrize("route,body,words", BAD_VALUES, ids=[f"{r}-{n}" for n, (r, _, _) in enumerate(BAD_VALUES)])
def test_bad_numbers_and_dates_get_400_naming_the_field(guarded_server, route, body, words):
    before = _state(guarded_server)
    response = _post(guarded_server, route, body)
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.text, (word, response.text)
    assert _state(guarded_server) == before


def test_a_failed_request_leaves_no_partial_state(guarded_server):
    server = guarded_server
    before = _state(server)
    good = [{"user_id": "partial-user", "item_id": f"i{n:03d}", "event_type": "purchase", "quantity": 1} for n in range(3)]
    response = _post(server, "/feedback", {"events": [*good, {**good[0], "item_id": "ghost"}]})
    assert response.status_code == 400 and "ghost" in response.text
    assert _post(server, "/recommend", {"user_id": "partial-user", "k": 3}).json()["cold_start"] is True
    items = [{**NEW_ITEM, "item_id": "partial-item"}, {**NEW_ITEM, "item_id": "partial-2", "stream_id": "no-room"}]
    response = _post(server, "/items", {"items": items})
    assert response.status_code == 400 and "no-room" in response.text
    assert "unknown item_id" in _post(server, "/score", {"user_id": "a", "item_ids": ["partial-item"]}).text
    assert _state(server) == before


# ----- fuzz ----------------------------------------------------------------------------------------------------
_OFFSETS = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))])
TIMES = st.one_of(
    st.none(), st.integers(-10**15, 10**15), st.text(max_size=25),
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
              _OFFSETS),
    st.builds(lambda d: d.isoformat(), st.datetimes(datetime(2026, 1, 1), datetime(2026, 1, 6))),
)
NUMBERS = st.one_of(st.none(), st.floats(), st.integers(-10**30, 10**30), st.text(max_size=4), st.booleans())
TEXTS = st.one_of(st.none(), st.text(st.characters(codec=None), max_size=60), st.text(max_size=3000))
IDS = st.one_of(st.sampled_from(sorted(LIVE_ITEMS) + ["i025", "ghost", ""]), st.text(max_size=30))
STREAMS = st.sampled_from([None, "r-kitchen", "r-mixed", "r-beauty", "nope"])
EVENT = st.fixed_dictionaries(
    {"item_id": IDS, "event_type": st.sampled_from([*EVENT_TYPES, "like", ""])},
    optional={"ts": TIMES, "quantity": NUMBERS, "price": NUMBERS, "text": TEXTS, "stream_id": STREAMS,
              "event_id": st.text(max_size=10), "extra": st.integers()},
)
FEEDBACK_EVENT = st.builds(lambda e, u: {**e, "user_id": u}, EVENT, st.one_of(st.just("fuzz-user"), st.text(max_size=8)))
ITEM = st.fixed_dictionaries(
    {"item_id": st.one_of(st.just("fuzz-item"), IDS), "title": TEXTS, "category": TEXTS, "price": NUMBERS},
    optional={"brand": TEXTS, "description": TEXTS, "first_seen": TIMES, "stream_id": STREAMS,
              "available": st.one_of(st.booleans(), NUMBERS)},
)
BODIES = st.one_of(
    st.tuples(st.just("/recommend"), st.fixed_dictionaries(
        {"user_id": st.one_of(st.sampled_from(["u-kitchen-1", "u-shoes-2", "stranger"]), st.text(max_size=10))},
        optional={"k": NUMBERS, "stream_id": STREAMS, "recent_events": st.lists(EVENT, max_size=4)})),
    st.tuples(st.just("/score"), st.fixed_dictionaries(
        {"user_id": st.text(max_size=10), "item_ids": st.lists(IDS, max_size=5)})),
    st.tuples(st.just("/feedback"), st.fixed_dictionaries({"events": st.lists(FEEDBACK_EVENT, max_size=4)})),
    st.tuples(st.just("/items"), st.fixed_dictionaries({"items": st.lists(ITEM, max_size=3)})),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=BODIES)
def test_fuzz_every_endpoint_never_5xx_and_failed_writes_change_nothing(guarded_server, request):
    route, body = request
    log = guarded_server["feedback_log"]
    size = log.stat().st_size if log.exists() else 0
    response = _post(guarded_server, route, body)
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code != 200:
        assert response.status_code in (400, 413, 422) and "error" in response.json()
        assert (log.stat().st_size if log.exists() else 0) == size  # no half-applied write
    elif route == "/feedback":
        logged = {r.get("event_id") for r in read_log(log)}
        assert set(response.json()["event_ids"]) <= logged
    elif route == "/recommend":
        assert len(response.json()["items"]) <= (body.get("k") or 10)


def test_openapi_driven_run_gets_no_5xx(guarded_server):
    """schemathesis (its CLI, as anyone would run it) over BentoML's /docs.json: every operation, writes authorised."""
    done = subprocess.run(
        [str(BIN / "st"), "run", f"http://127.0.0.1:{guarded_server['port']}/docs.json", "--checks", "not_a_server_error",
         "--max-examples", "30", "--header", f"Authorization: Bearer {guarded_server['token']}",
         "--request-timeout", "60", "--seed", "1", "--no-color"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    total = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    assert total and f"Tested: {total[2]}" in done.stdout and int(total[2]) >= 9, done.stdout[-3000:]  # all operations
    assert "No issues found" in done.stdout, done.stdout[-3000:]


# ----- crash (last: it kills the server) -----------------------------------------------------------------------
def test_sigkill_during_feedback_traffic_loses_no_acknowledged_event(guarded_server):
    from liveloop.serving import export_feedback
    from liveloop.workspace import Workspace

    server = guarded_server
    acked: list[str] = []
    stop = threading.Event()

    def traffic(worker: int) -> None:
        with httpx.Client(base_url=server["client"].base_url, timeout=30, headers={**JSON, **server["auth"]}) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                events = [{"user_id": f"crash-{worker}", "item_id": f"i{(worker + n + j) % 22:03d}",
                           "event_type": "click", "event_id": f"crash-{worker}-{n}-{j}"} for j in range(3)]
                try:
                    response = client.post("/feedback", json={"events": events})
                except httpx.TransportError:
                    return  # the server died mid-request: that one was never acknowledged
                if response.status_code == 200:
                    acked.extend(response.json()["event_ids"])

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while len(acked) < 150 and time.time() < deadline:
        time.sleep(0.05)
    service = psutil.Process(server["proc"].pid)
    doomed = [*service.children(recursive=True), service]  # the worker runs in a session of its own
    assert any("_bentoml_impl.worker" in " ".join(p.cmdline()) for p in doomed)
    for process in doomed:  # the worker (which writes the log) first, then the arbiter
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(doomed, timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) >= 150, "too little traffic before the kill to mean anything"
    logged = [r["event_id"] for r in read_log(server["feedback_log"]) if r["kind"] == "event"]
    missing = set(acked) - set(logged)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost"
    batch = export_feedback(Workspace(server["root"], server["root"] / ".liveloop"), DAY)  # the log still exports
    assert set(acked) <= set(read_batch(batch)["events"]["event_id"])
