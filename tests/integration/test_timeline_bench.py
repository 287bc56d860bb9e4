"""The headline experiment script (bench/timeline.py) end to end at a tiny size, and its refusals of bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def timeline():
    spec = importlib.util.spec_from_file_location("liveloop_bench_timeline", REPO / "bench" / "timeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


TINY = ["--days", "3", "--drift-day", "2", "--users", "40", "--items", "30", "--rooms", "2", "--items-per-room", "10",
        "--incremental-steps", "1", "--full-epochs", "0.1", "--batch-size", "8", "--ctr-batch-size", "0",
        "--max-length", "32", "--max-users", "10", "--threads", "1"]


@pytest.mark.slow
def test_tiny_timeline_end_to_end(timeline, params_file, tmp_path):
    out = tmp_path / "run"
    result = timeline.main(["--params", str(params_file), "--out", str(out), "--plot", str(tmp_path / "t.png"), *TINY])

    saved = json.loads((out / "timeline.json").read_text())
    assert saved["complete"] and saved["eval_days"] == [1, 2] and saved["drift_day"] == 2
    assert set(saved["strategies"]) == {"stale", "full_retrain", "incremental"}
    for name, s in saved["strategies"].items():
        assert len(s["ndcg@10"]) == 2 and all(math.isfinite(v) and 0 <= v <= 1 for v in s["ndcg@10"]), name
        assert all(math.isfinite(v) for v in s["hr@10"])
        assert math.isfinite(s["train_seconds"]) and s["train_samples"] >= 0
    # day 1: every strategy still holds the shared warm-up model, so all three score the same
    assert len({s["ndcg@10"][0] for s in saved["strategies"].values()}) == 1
    # the stale champion never trains; the others trained once (after day 1) on their own budgets
    assert saved["strategies"]["stale"]["train_samples"] == 0
    assert saved["strategies"]["incremental"]["updates"][0]["batches"] == 1
    assert saved["strategies"]["full_retrain"]["updates"][0]["batches"] == 2
    assert saved["strategies"]["incremental"]["train_samples"] == 8  # 1 step x batch 8
    assert all(o is not None and math.isfinite(o) for o in saved["oracle_ndcg"])
    summary = saved["summary"]
    assert math.isfinite(summary["quality_ratio_c_over_b"]) and math.isfinite(summary["sample_ratio_c_over_b"])
    assert set(summary["goals"]) == {"c_within_1pct_of_b", "c_compute_at_most_10pct_of_b",
                                     "c_recovers_within_2_batches", "a_degrades_after_drift"}
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(c)/(b) mean NDCG@10" in (out / "summary.md").read_text()
    assert result["summary"] == summary
    # each strategy kept its own replay reservoir: only the incremental one replays
    assert (out / "incremental" / "data" / "replay" / "examples.parquet").exists()
    assert not (out / "full_retrain" / "data" / "replay" / "examples.parquet").exists()


def test_refuses_to_delete_a_folder_that_is_not_a_timeline_run(timeline, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(timeline.TimelineError, match="does not hold a timeline run"):
        timeline.prepare_out_dir(tmp_path, overwrite=True)
    with pytest.raises(timeline.TimelineError, match="--overwrite"):
        timeline.prepare_out_dir(tmp_path, overwrite=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_bad_arguments_fail_with_a_named_reason(timeline, params_file, tmp_path):
    from liveloop.config import load_config

    cfg = load_config(params_file, overrides={"simulate.days": 5, "simulate.drift_day": 0})
    with pytest.raises(timeline.TimelineError, match="drift day must fall in 2..4"):
        timeline.run_timeline(cfg, tmp_path / "a", incremental_steps=1, full_epochs=1.0)
    with pytest.raises(timeline.TimelineError, match="incremental_steps"):
        timeline.run_timeline(cfg, tmp_path / "b", incremental_steps=0, full_epochs=1.0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_full_retrain_budget_grows_with_history(timeline):
    assert timeline.full_retrain_steps(320, 1.0, 32) == 10
    assert timeline.full_retrain_steps(640, 1.0, 32) == 20
    assert timeline.full_retrain_steps(1, 0.1, 32) == 1


def test_recovery_is_counted_in_batches_after_the_drift(timeline):
    days = [1, 2, 3, 4, 5, 6]
    oracle = [0.5] * 6
    # pre-drift NDCG/oracle = 0.8; drops on the drift day (4), back within 5% two batches later
    ndcg = [0.4, 0.4, 0.4, 0.2, 0.3, 0.39]
    assert timeline.recovery_days(ndcg, oracle, days, drift_day=4, tolerance=0.05) == 2
    assert timeline.recovery_days([0.4, 0.4, 0.4, 0.2, 0.2, 0.2], oracle, days, 4, 0.05) is None
