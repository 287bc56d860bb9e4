"""Monitoring over time: real drift checks and evaluations of simulated days recorded with record_batch, then a real
`evidently ui` on that workspace answering with the project, its dashboard and the recorded series; a screenshot of
the dashboard goes to reports/screenshots/ when chromium is there."""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
import pytest

from liveloop.config import DriftConfig, SimulateConfig, load_config
from liveloop.data.batches import read_batch
from liveloop.data.simulator import simulate
from liveloop.monitoring import check_drift
from liveloop.monitoring.dashboard import DashboardInputError, batch_values, record_batch
from liveloop.monitoring.embeddings import TextEncoder
from tests.integration.conftest import BIN, SCREENSHOTS, free_port, running, write_params

FAST = DriftConfig(embedding_sample=60, max_rows=5000)
MEAN = "evidently:metric_v2:MeanValue"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Four price-shock days (the shock on day 3): days 2 and 3 drift-checked against the days before and evaluated
    with a fresh champion and candidate; day 1 recorded as quarantined. Returns what went in and the workspace."""
    from liveloop.evaluation import evaluate_model
    from liveloop.model.recommender import Recommender

    root = tmp_path_factory.mktemp("dashboard")
    cfg = load_config(write_params(root))
    days = simulate(SimulateConfig(scenario="price-shock", days=4, drift_day=3, n_users=150, n_items=100), 3,
                    root / "batches", root / "truth")
    encoder = TextEncoder("all-MiniLM-L6-v2", FAST.embedding_max_length)
    models = {}
    for role, seed in (("champion", 0), ("candidate", 1)):
        models[role] = root / role
        Recommender.from_config(cfg.model, device="cpu", seed=seed).save(models[role])
    workspace = root / "evidently"
    inputs = {}
    quality = tuple(cfg.evaluate.report_metrics()[i] for i in (0, 2))  # what the loop plots: ndcg@10, recall@50
    record_batch(workspace, days[1].name, drift=None, thresholds=FAST.thresholds, decision="quarantined",
                 quality=quality)
    for n, decision in ((2, "promoted"), (3, "rejected")):
        verdict = check_drift(days[:n], days[n], root / "drift" / days[n].name, FAST, text_encoder=encoder)
        evals = {role: evaluate_model(cfg, path, days[:n], days[n], baselines=role == "candidate")["models"]
                 for role, path in models.items()}
        events = len(read_batch(days[n])["events"])
        record_batch(workspace, days[n].name, drift=verdict, thresholds=FAST.thresholds,
                     candidate=evals["candidate"]["model"], champion=evals["champion"]["model"],
                     baselines=evals["candidate"], decision=decision, feedback_events=events, quality=quality)
        inputs[days[n].name] = {"drift": verdict, "evals": evals, "events": events}
    return {"root": root, "workspace": workspace, "days": [d.name for d in days], "inputs": inputs}


def _series(client: httpx.Client, project: str, columns: list[str]) -> dict[str, list]:
    body = {"series_filter": [{"tags": [], "metadata": {}, "metric": MEAN, "metric_labels": {"column": c}}
                              for c in columns]}
    response = client.post(f"/api/v2/snapshots/{project}/data_series_batch", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return {"days": [s["timestamp"][:10] for s in data["sources"]],
            **{s["params"]["column"]: s["values"] for s in data["series"]}}


@pytest.mark.slow
def test_evidently_ui_serves_the_recorded_batches_and_dashboard(recorded, browser):
    root, days, inputs = recorded["root"], recorded["days"], recorded["inputs"]
    stable, shock = inputs[days[2]], inputs[days[3]]
    assert not stable["drift"]["drift"] and shock["drift"]["drift"]  # the real checks saw the shock on day 3
    port = free_port()
    cmd = [str(BIN / "evidently"), "ui", "--workspace", str(recorded["workspace"]), "--host", "127.0.0.1",
           "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, root, {**os.environ, "DO_NOT_TRACK": "1"}, f"{base}/api/version", root / "ui.log"), \
            httpx.Client(base_url=base, timeout=30) as client:
        projects = client.get("/api/projects").json()
        assert [p["name"] for p in projects] == ["liveloop"]
        project = projects[0]["id"]
        assert len(client.get(f"/api/projects/{project}/snapshots").json()) == 3

        got = _series(client, project, ["drift.repriced_share", "threshold.repriced_share", "candidate.ndcg@10",
                                        "champion.recall@50", "best_baseline.ndcg@10", "candidate.ctr_auc",
                                        "decision.promoted", "decision.rejected", "feedback.events"])
        assert got["days"] == days[1:]  # one snapshot per batch, on the batch's day
        limit = FAST.thresholds.repriced_share
        assert got["threshold.repriced_share"] == [None, limit, limit]  # the quarantined day had no drift check
        assert got["drift.repriced_share"] == [None, stable["drift"]["signals"]["repriced_share"],
                                               shock["drift"]["signals"]["repriced_share"]]
        assert got["drift.repriced_share"][1] < limit <= got["drift.repriced_share"][2]
        checked = days[2:]
        assert got["candidate.ndcg@10"][1:] == [inputs[d]["evals"]["candidate"]["model"]["ndcg@10"] for d in checked]
        assert got["champion.recall@50"][1:] == [inputs[d]["evals"]["champion"]["model"]["recall@50"] for d in checked]
        best = [max(m["ndcg@10"] for n, m in inputs[d]["evals"]["candidate"].items() if n not in ("model", "oracle"))
                for d in checked]
        assert got["best_baseline.ndcg@10"][1:] == best
        assert all(0 < v < 1 for v in got["candidate.ctr_auc"][1:])
        assert got["decision.promoted"] == [0.0, 1.0, 0.0] and got["decision.rejected"] == [0.0, 0.0, 1.0]
        assert got["feedback.events"] == [None] + [inputs[d]["events"] for d in checked]

        dashboard = client.get(f"/api/v2/dashboards/{project}").json()
        assert [t["title"] for t in dashboard["tabs"]] == ["Drift", "Quality", "Loop"]
        titles = {p["title"] for p in dashboard["panels"]}
        assert {"NDCG@10 per day", "Recall@50 per day", "CTR AUC per day", "Promotions and rejections",
                "Feedback volume (events per batch)", "events on repriced items",
                "share of drifted tabular columns"} <= titles
        assert client.get("/").status_code == 200 and "<html" in client.get("/").text

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/projects/{project}")
            page.get_by_text("NDCG@10 per day").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # let the charts draw
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        finally:
            page.close()
    assert (SCREENSHOTS / "dashboard.png").stat().st_size > 10_000


def test_batch_values_skip_missing_numbers_and_reject_bad_input():
    values, layout = batch_values({"drift": True, "signals": {"repriced_share": 0.3}}, FAST.thresholds,
                                  {"ndcg@5": 0.2, "recall@20": None, "auc": 0.7}, None,
                                  {"model": {"ndcg@5": 0.9}, "oracle": {"ndcg@5": 1.0}, "popular": {"ndcg@5": 0.1}},
                                  "promoted", 12, ("ndcg@5", "recall@20"))
    assert values["drift.repriced_share"] == 0.3 and values["threshold.repriced_share"] == FAST.thresholds.repriced_share
    assert values["best_baseline.ndcg@5"] == 0.1  # neither the model nor the oracle is a baseline
    assert "candidate.recall@20" not in values and not any(c.startswith("champion.") for c in values)
    assert values["drift.detected"] == 1.0 and values["feedback.events"] == 12.0
    assert ("events on repriced items", [("measured", "drift.repriced_share"),
                                         ("threshold", "threshold.repriced_share")], "line") in layout["Drift"]
    assert [title for title, _, _ in layout["Quality"]] == ["NDCG@5 per day", "Recall@20 per day", "CTR AUC per day"]
    with pytest.raises(DashboardInputError, match="decision must be one of"):
        batch_values(None, FAST.thresholds, None, None, None, "maybe", None, ("ndcg@10",))
    with pytest.raises(DashboardInputError, match="candidate.ndcg@10 must be a finite number"):
        batch_values(None, FAST.thresholds, {"ndcg@10": math.nan}, None, None, "rejected", None, ("ndcg@10",))
    with pytest.raises(DashboardInputError, match="not named YYYY-MM-DD"):
        record_batch(Path("/nonexistent-never-written"), "yesterday", drift=None, thresholds=FAST.thresholds,
                     decision="rejected", quality=("ndcg@10",))
