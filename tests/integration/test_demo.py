"""The live-room demo page in a real browser (Playwright driving Debian's chromium) against a real `bentoml serve`:
the page lists the live rooms, a click changes the recommendations at once, an added product shows up in its room.
A screenshot goes to reports/screenshots/demo.png."""

from __future__ import annotations

import json
import os

import httpx
import pytest
import yaml

from tests.integration.conftest import BIN, REPO, SCREENSHOTS, WRITE_TOKEN, free_port, running
from tests.integration.test_serving import build_workspace


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """The serving tests' hand-made live day (r-kitchen and r-mixed live at 11:00), packaged and served for real."""
    import subprocess

    root = tmp_path_factory.mktemp("demo")
    params = build_workspace(root, REPO / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["serve"].update({"now": "latest"})
    params.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml-home"), "LIVELOOP_PARAMS": str(params),
           "LIVELOOP_API_TOKEN": WRITE_TOKEN}
    done = subprocess.run([str(BIN / "liveloop"), "package", "--no-build", "--params", str(params)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    port = free_port()
    cmd = [str(BIN / "bentoml"), "serve", "liveloop.serving.service:LiveRecommender", "--host", "127.0.0.1",
           "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, root, env, f"{base}/readyz", root / "server.log"):
        yield base, root


@pytest.mark.slow
def test_demo_world_lists_live_rooms_and_known_users(demo_server):
    demo_server, _ = demo_server
    assert httpx.get(f"{demo_server}/demo/").headers["content-type"].startswith("text/html")
    assert "demo.js" in httpx.get(f"{demo_server}/demo/", follow_redirects=True).text
    world = httpx.get(f"{demo_server}/demo/world").json()
    assert [r["stream_id"] for r in world["rooms"]] == ["r-kitchen", "r-mixed"]  # r-beauty (08-09) is over
    assert [p["item_id"] for p in world["rooms"][0]["products"]] == [f"i{i:03d}" for i in range(10)]
    assert world["users"] and all(u["events"] == 4 for u in world["users"])  # every hand-made user has 4 events
    assert httpx.get(f"{demo_server}/demo/static/demo.js").status_code == 200
    assert httpx.get(f"{demo_server}/demo/static/nothing.js").status_code == 404


@pytest.mark.slow
def test_demo_page_click_changes_the_list_and_a_new_product_appears(demo_server, browser):
    demo_server, root = demo_server
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the first write meets the token (401) and asks for it; the comment button asks for the comment's text
    page.on("dialog", lambda d: d.accept(WRITE_TOKEN if "token" in d.message else "does it come in blue?"))
    try:
        page.goto(f"{demo_server}/demo/")
        page.locator('#rooms .room[data-stream-id="r-kitchen"]').wait_for()
        page.locator("#recs li").first.wait_for()
        page.select_option("#user", "u-shoes-3")
        page.wait_for_function("document.querySelector('#recs li') && !document.querySelector('#recs li.changed')"
                               " && document.getElementById('user').value === 'u-shoes-3'")
        page.wait_for_timeout(500)
        before = page.locator("#recs li").evaluate_all("els => els.map(e => e.dataset.itemId)")
        assert len(before) == 8
        # a shoes fan clicks a kitchen item they have never touched, shown last: it moves up at once
        target = before[-1]
        page.locator(f'#recs li[data-item-id="{target}"] button[data-action="click"]').click()
        page.get_by_text("the list changed").wait_for(timeout=30_000)
        after = page.locator("#recs li").evaluate_all("els => els.map(e => e.dataset.itemId)")
        assert after != before and after.index(target) < before.index(target)
        reason = page.locator(f'#recs li[data-item-id="{target}"] .reason').inner_text()
        assert reason.startswith("you clicked this before") and page.locator("#recs li.changed").count() > 0
        page.locator(f'#recs li[data-item-id="{target}"] button[data-action="comment"]').click()
        page.get_by_text("comment on").wait_for(timeout=30_000)

        page.fill('#add-form input[name="item_id"]', "demo-new-1")
        page.fill('#add-form input[name="title"]', "Trail Running Shoes Ultra")
        page.fill('#add-form input[name="category"]', "shoes")
        page.fill('#add-form input[name="price"]', "89")
        page.select_option("#room-select", "r-mixed")
        page.click('#add-form button[type="submit"]')
        page.locator('#rooms .room[data-stream-id="r-mixed"] li[data-item-id="demo-new-1"]').wait_for(timeout=30_000)
        page.get_by_text("added “Trail Running Shoes Ultra” to r-mixed").wait_for()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "demo.png"), full_page=True)
    finally:
        page.close()
    assert errors == []
    ids = {i["item_id"] for i in httpx.post(f"{demo_server}/recommend", json={"user_id": "u-shoes-3", "k": 50}).json()["items"]}
    assert "demo-new-1" in ids  # the upsert reached the service, not only the page
    logged = [json.loads(line) for line in (root / "data" / "feedback" / "events.jsonl").read_text().splitlines()]
    assert {(e.get("user_id"), e.get("item_id"), e.get("event_type"), e.get("text")) for e in logged} >= {
        ("u-shoes-3", target, "click", None), ("u-shoes-3", target, "comment", "does it come in blue?")}
