"""End to end on tiny simulated data: simulate -> train a few steps -> evaluate (model, baselines, oracle) via the
function and the CLI, and the benchmark on a tiny imported-style dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.config import load_config
from liveloop.data.simulator import simulate
from liveloop.evaluation import evaluate_model, run_benchmark
from liveloop.evaluation.evaluate import FROZEN, MODEL, ORACLE
from liveloop.training import train
from liveloop.workspace import Workspace

TINY = {
    "simulate.days": 3, "simulate.n_users": 60, "simulate.n_items": 40, "simulate.n_hosts": 3,
    "simulate.rooms_per_day": 3, "simulate.items_per_room": 10,
    "train.steps": 3, "train.batch_size": 8, "train.ctr_batch_size": 4, "model.max_length": 24,
    "evaluate.bootstrap_samples": 50, "evaluate.mf_iterations": 3, "evaluate.benchmark_steps": 2,
}
BASELINES = {"popularity", "repeat_count", "repeat_recency", "item_knn", "mf_als", FROZEN}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    (root / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    cfg = load_config(root / "params.yaml", TINY)
    ws = Workspace.from_config(cfg)
    days = simulate(cfg.simulate, cfg.seed, ws.accepted, ws.simulator_truth)
    model_dir = train(cfg, ws, days[:-1], "scratch", ws.candidates / "m").model_dir
    return {"root": root, "cfg": cfg, "ws": ws, "days": days, "model": model_dir}


@pytest.mark.slow
def test_train_then_evaluate_scores_model_baselines_and_oracle(world):
    cfg, days = world["cfg"], world["days"]
    out = world["root"] / "eval.json"
    result = evaluate_model(cfg, world["model"], days[:-1], days[-1], truth_dir=world["ws"].simulator_truth,
                            out_json=out, out_md=world["root"] / "eval.md")
    models = result["models"]
    assert {MODEL, ORACLE} | BASELINES == set(models)
    for name, metrics in models.items():
        for key in ("hr@10", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr", "coverage@10"):
            assert 0.0 <= metrics[key] <= 1.0, (name, key)
        assert metrics["recall@50"] >= metrics["recall@10"]
    assert models[MODEL]["auc"] is not None and 0.0 <= models[MODEL]["auc"] <= 1.0
    assert result["setup"]["candidates"] <= cfg.simulate.rooms_per_day * cfg.simulate.items_per_room  # live items only
    assert result["setup"]["auc_pairs"]["source"] == "impressions"
    # the oracle knows the hidden preference: it must beat popularity on the same targets
    assert models[ORACLE]["ndcg@10"] > models["popularity"]["ndcg@10"]
    assert result["comparison"]["best_baseline"] in BASELINES
    assert json.loads(out.read_text())["models"][MODEL]["ndcg@10"] == pytest.approx(models[MODEL]["ndcg@10"])
    assert "| model |" in (world["root"] / "eval.md").read_text()


@pytest.mark.slow
def test_evaluate_cli_writes_dvc_metrics_and_rejects_bad_input(world):
    runner = CliRunner()
    params = str(world["root"] / "params.yaml")
    days = world["days"]
    ok = runner.invoke(app, ["evaluate", "-p", params, "--model", str(world["model"]), "--test", str(days[-1]),
                             "--no-baselines"])
    assert ok.exit_code == 0, ok.output
    metrics = json.loads((world["ws"].metrics / "eval.json").read_text())
    assert set(metrics["models"]) == {MODEL, ORACLE}  # truth found in data/simulator; history = earlier days
    assert metrics["setup"]["history_batches"] == len(days) - 1

    bad_model = runner.invoke(app, ["evaluate", "-p", params, "--model", str(world["root"]), "--test", str(days[-1])])
    assert bad_model.exit_code == 1 and "is not a model dir" in bad_model.output
    bad_test = runner.invoke(app, ["evaluate", "-p", params, "--model", str(world["model"]), "--test", str(world["root"])])
    assert bad_test.exit_code == 1 and "is not a batch folder" in bad_test.output
    overlap = runner.invoke(app, ["evaluate", "-p", params, "--model", str(world["model"]), "--test", str(days[0]),
                                  "--history", str(days[1])])
    assert overlap.exit_code == 1 and "history reaches" in overlap.output


@pytest.mark.slow
def test_benchmark_trains_before_the_cut_and_compares_with_every_baseline(world, tmp_path):
    cfg = world["cfg"]
    out = tmp_path / "bench.json"
    replay_before = sorted((p.name, p.read_bytes()) for p in world["ws"].replay.glob("*"))
    result = run_benchmark(cfg, world["ws"], world["ws"].accepted, out)
    saved = json.loads(out.read_text())
    assert set(saved["models"]) == {MODEL} | BASELINES
    assert saved["setup"]["protocol"] == "time_split" and saved["train"]["steps"] == cfg.evaluate.benchmark_steps
    low, high = result["comparison"]["ratio_ci95"]
    assert low <= result["comparison"]["ratio"] <= high
    assert (tmp_path / "bench.md").exists() and (tmp_path / "bench-model" / "model.safetensors").exists()
    # the benchmark trains in a scratch workspace: the project's replay reservoir is untouched
    assert sorted((p.name, p.read_bytes()) for p in world["ws"].replay.glob("*")) == replay_before

    runner = CliRunner()
    empty = runner.invoke(app, ["benchmark", "-p", str(world["root"] / "params.yaml"), "--data", str(tmp_path),
                                "--out", str(tmp_path / "x.json")])
    assert empty.exit_code == 1 and "holds no daily batch folders" in empty.output
    with pytest.raises(ValueError, match="already exists"):  # never overwrites the kept model dir
        run_benchmark(cfg, world["ws"], world["ws"].accepted, out)
