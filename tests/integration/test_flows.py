"""The loop as Prefect runs it (ephemeral API via prefect_test_harness), with real GX, DVC, Evidently and training."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from liveloop import registry
from liveloop.data.batches import list_batches
from liveloop.workspace import open_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    return asyncio.run(read())


def test_replay_timeline_runs_the_whole_loop(tiny_workspace: Path):
    from flows.replay_timeline import replay_timeline

    results = replay_timeline(params=str(tiny_workspace))
    cfg, ws = open_workspace(tiny_workspace)
    assert [r["batch"] for r in results] == [p.name for p in list_batches(ws.accepted)]
    assert len(results) == 3
    assert results[0]["status"] == "promoted", results[0]
    assert all(r["status"] in {"promoted", "rejected"} for r in results), results
    # every candidate is shown next to the baselines and the oracle on its own holdout (loop.baselines, the default):
    # in its batch report and in its registry entry
    names = {"frozen_encoder", "item_knn", "mf_als", "repeat_recency", "popularity", "oracle"}
    for r in results:
        assert names <= set(r["baselines"]), r["baselines"]
        assert "| baseline: frozen_encoder | new |" in (ws.reports / "loop" / f"{r['batch']}.md").read_text()
        assert names <= set(registry.get_version(ws, r["candidate"])["metrics"]["baselines"])
    # every accepted batch is DVC-tracked and pushed to the local remote
    for batch in list_batches(ws.accepted):
        assert batch.with_name(batch.name + ".dvc").exists()
    assert any(ws.dvc_remote.rglob("*")), "nothing was pushed to the DVC remote"
    # lineage: the champion is registered with its data versions and flow run id, and is DVC-tracked
    champ = registry.get_version(ws, registry.champion_version(ws))
    assert champ["data_versions"] and champ["flow_run_id"]
    assert (ws.versions / f"{champ['version']}.dvc").exists()
    # drift reports for the batches that had a reference, and one artifact per batch plus the summary
    assert len(list((ws.reports / "drift").rglob("*.html"))) >= 2
    keys = _artifact_keys()
    assert "timeline-summary" in keys
    assert {f"batch-{r['batch']}" for r in results} <= keys
    assert {f"batch-{r['batch']}-table" for r in results if r["status"] in {"promoted", "rejected"}} <= keys
    assert any(k and k.endswith("-drift-report") for k in keys), keys
    # later days warm-start from the champion
    assert results[1]["train"]["steps"] == cfg.train.steps

    # the service's feedback becomes the next batch, and the monitor reports drift and live quality
    from flows.monitor_drift import ingest_feedback, monitor_drift
    from datetime import timedelta

    from liveloop.data.batches import batch_day, read_batch
    from liveloop.serving.feedback import FeedbackLog, log_path
    from liveloop.validation import validate_batch

    last = list_batches(ws.accepted)[-1]
    shown = read_batch(last)["events"].iloc[0]
    day = str(batch_day(last) + timedelta(days=1))
    FeedbackLog(log_path(ws)).append([
        {"kind": "event", "event_id": f"fb-{i}", "ts": f"{day}T10:00:0{i}", "user_id": shown["user_id"],
         "item_id": shown["item_id"], "stream_id": None, "event_type": kind, "text": None,
         "quantity": None, "price": None}
        for i, kind in enumerate(["impression"] * 4 + ["click"] * 2)])
    exported = Path(ingest_feedback(str(tiny_workspace), day=day))
    assert exported.name == f"{day}-feedback" and exported.parent == ws.incoming
    assert len(read_batch(exported)["events"]) == 6
    gate = validate_batch(exported, cfg.validation)
    assert gate.ok, gate.failures  # the exported feedback is a valid next batch for the loop
    report = monitor_drift(str(tiny_workspace))
    assert set(report) >= {"drift", "reasons", "signals", "live_quality"}
    assert report["live_quality"]["feedback"]["ctr"] == pytest.approx(0.5)
    assert "drift-monitor" in _artifact_keys()


def test_quarantined_batch_skips_training_and_keeps_the_champion(tiny_workspace: Path):
    from flows.live_loop import live_loop
    from liveloop.data.simulator import simulate

    cfg, ws = open_workspace(tiny_workspace)
    days = simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)
    first = live_loop(str(days[0]), params=str(tiny_workspace))
    assert first["status"] == "promoted"
    champion = registry.champion_version(ws)
    events = days[1] / "events.parquet"
    events.write_bytes(b"this is not parquet")  # a corrupt upload
    second = live_loop(str(days[1]), params=str(tiny_workspace))
    assert second["status"] == "quarantined"
    assert registry.champion_version(ws) == champion
    quarantined = ws.quarantine / days[1].name
    assert (quarantined / "report.json").exists()
    assert (quarantined / "events.parquet").read_bytes() == b"this is not parquet", "the bad file must be kept as is"
    assert not (ws.candidates / days[1].name).exists(), "a quarantined batch must not be trained on"
    third = live_loop(str(days[2]), params=str(tiny_workspace))
    assert third["status"] in {"promoted", "rejected"}


def test_failing_training_is_retried_and_the_champion_keeps_serving(tiny_workspace: Path):
    from prefect.client.orchestration import get_client

    from flows.live_loop import live_loop
    from liveloop.data.simulator import simulate

    cfg, ws = open_workspace(tiny_workspace)
    days = simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)
    assert live_loop(str(days[0]), params=str(tiny_workspace))["status"] == "promoted"
    champion = registry.champion_version(ws)
    # a real fault: the candidate's output folder cannot be created because a file sits at its path
    ws.candidates.mkdir(parents=True, exist_ok=True)
    (ws.candidates / days[1].name).write_text("not a folder")
    state = live_loop(str(days[1]), params=str(tiny_workspace), return_state=True)
    assert state.is_failed()
    assert registry.champion_version(ws) == champion
    assert (registry.champion_dir(ws) / "model.safetensors").exists()

    async def train_runs():
        async with get_client() as client:
            runs = await client.read_task_runs()
            return [r for r in runs if r.name.startswith("train_task") and r.flow_run_id == state.state_details.flow_run_id]

    runs = asyncio.run(train_runs())
    assert runs and runs[0].run_count == 2, "the failed training task should have been retried once"


def test_loop_command_runs_the_same_steps_without_prefect(tiny_workspace: Path):
    """`liveloop loop BATCH` (a real CLI process, no Prefect): lineage that agrees between registry.json and the
    model's state.json, the gate's paired intervals recorded, and the no-retrain branch keeping the champion."""
    import json
    import subprocess
    import sys

    import yaml

    from liveloop.data.simulator import simulate
    from liveloop.versioning import data_version
    from tests.integration.conftest import write_params

    cfg, ws = open_workspace(tiny_workspace)
    days = simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)

    def loop_cmd(day: Path) -> dict:
        proc = subprocess.run([str(Path(sys.executable).parent / "liveloop"), "loop", str(day), "-p",
                               str(tiny_workspace)], cwd=tiny_workspace.parent, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(proc.stdout)

    def lineage(version: str) -> tuple[dict, dict]:
        entry = registry.get_version(ws, version)
        return entry, json.loads((ws.root / entry["path"] / "state.json").read_text())

    first = loop_cmd(days[0])
    assert first["status"] == "promoted" and first["champion_after"] == first["candidate"] == "v0001", first
    md5 = data_version(ws.accepted / f"{days[0].name}.dvc")
    assert first["versions"]["data"] == {days[0].name: md5} and first["versions"]["model"]
    entry, state = lineage("v0001")
    assert entry["parent"] is None and state["parent"] is None
    assert entry["data_versions"] == state["data_versions"] == {days[0].name: md5}

    second = loop_cmd(days[1])
    assert second["status"] in {"promoted", "rejected"}, second
    assert second["train_reasons"] == ["schedule (every 1 batches)"] or second["drift"]
    entry, state = lineage(second["candidate"])
    assert entry["parent"] == state["parent"] == "v0001"
    assert entry["data_versions"] == state["data_versions"] == {days[1].name: second["versions"]["data"][days[1].name]}
    assert set(entry["all_data_versions"]) == set(state["all_data_versions"]) == {days[0].name, days[1].name}
    checks = {(c["set"], c["method"]): c for c in second["decision"]["checks"]}
    paired = checks[("new", "paired bootstrap")]
    low, high = paired["interval"]
    assert low <= paired["diff"] <= high and paired["users"] > 0
    assert entry["gate"] == second["decision"]["checks"]
    assert (ws.reports / "loop" / f"{days[1].name}.md").read_text().count("bounds [") >= 1

    # no drift can be found and no schedule: the champion stays and nothing is trained
    params = yaml.safe_load(tiny_workspace.read_text())
    limits = params["drift"]["thresholds"]
    never = {"drifted_share": 1.0, "repriced_share": 1.0, "interest_drop": 1.0,
             **{key: {name: 2.0 for name in limits[key]} for key in ("new_value_share", "embedding_auc")},
             "column_drift": {name: 100.0 for name in limits["column_drift"]}}
    write_params(tiny_workspace.parent, loop={**params["loop"], "retrain_every": 0},
                 drift={**params["drift"], "thresholds": never})
    champion = registry.champion_version(ws)
    third = loop_cmd(days[2])
    assert third["status"] == "no-retrain" and third["train_reasons"] == [], third
    assert third["champion_after"] == champion == registry.champion_version(ws)
    assert not (ws.candidates / days[2].name).exists()
    assert json.loads((ws.reports / "loop" / f"{days[2].name}.json").read_text())["status"] == "no-retrain"
