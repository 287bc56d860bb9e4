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


TINY = ["--days", "3", "--drift-day", "2",  # world sizes: the tiny workspace params (80 users, 60 items, 3 rooms)
        "--steps", "2", "--batch-size", "8", "--max-users", "10", "--threads", "1"]
BASELINES = {"item_knn", "mf_als", "frozen_encoder", "repeat_recency"}


@pytest.mark.slow
def test_tiny_timeline_end_to_end(timeline, tiny_workspace, tmp_path):
    out = tmp_path / "run"
    result = timeline.main(["--params", str(tiny_workspace), "--out", str(out), "--plot", str(tmp_path / "t.png"), *TINY])

    saved = json.loads((out / "timeline.json").read_text())
    assert saved["complete"] and saved["eval_days"] == [1, 2] and saved["drift_day"] == 2
    assert set(saved["strategies"]) == {"stale", "full_retrain", "incremental"}
    for name, s in saved["strategies"].items():
        assert len(s["ndcg@10"]) == 2 and all(math.isfinite(v) and 0 <= v <= 1 for v in s["ndcg@10"]), name
        assert all(math.isfinite(v) for v in s["hr@10"])
        assert math.isfinite(s["train_seconds"]) and s["train_samples"] >= 0
    # day 1: every strategy still holds the shared warm-up model, so all three score the same
    assert len({s["ndcg@10"][0] for s in saved["strategies"].values()}) == 1
    # the stale model never trains; (b) retrains from scratch on both batches, (c) warm-starts on the new one
    assert saved["strategies"]["stale"]["train_samples"] == 0 and not saved["strategies"]["stale"]["updates"]
    full, inc = saved["strategies"]["full_retrain"]["updates"][0], saved["strategies"]["incremental"]["updates"][0]
    assert full["batches"] == 2 and full["init_from"] == "scratch" and full["steps"] == 2
    assert inc["batches"] == 1 and inc["init_from"].endswith("model") and inc["steps"] == 2
    assert saved["budget"]["full_retrain_context_days"] > saved["config"]["simulate"]["days"]
    # (c)'s warm start mixes in replay from day 0; (b) trains on exactly its batches
    inc_state = json.loads((out / "incremental" / "day001" / "state.json").read_text())["metrics"]
    full_state = json.loads((out / "full_retrain" / "day001" / "state.json").read_text())["metrics"]
    assert inc_state["replay_examples"] > 0 and full_state["replay_examples"] == 0
    # the baselines refit every day and the oracle, recorded per day from the same evaluation
    assert BASELINES <= set(saved["baselines"])
    for name, b in saved["baselines"].items():
        assert len(b["ndcg@10"]) == 2 and all(math.isfinite(v) for v in b["ndcg@10"]), name
    assert "oracle" not in saved["baselines"] and "model" not in saved["baselines"]
    assert len(saved["oracle"]["ndcg@10"]) == 2 and all(math.isfinite(o) for o in saved["oracle"]["ndcg@10"])
    summary = saved["summary"]
    for key in ("quality_ratio_c_over_b", "sample_ratio_c_over_b", "wall_ratio_c_over_b", "oracle_mean_ndcg@10",
                "best_daily_baseline_mean_ndcg@10"):
        assert summary[key] is not None and math.isfinite(summary[key]), key
    for s in summary["strategies"].values():
        assert math.isfinite(s["vs_oracle"]) and math.isfinite(s["vs_best_daily_baseline"])
    assert summary["best_daily_baseline_mean_ndcg@10"] >= max(b["mean_ndcg@10"] for b in summary["baselines"].values())
    assert set(summary["goals"]) == {"c_within_1pct_of_b", "c_wall_at_most_10pct_of_b", "c_recovers_within_2_batches",
                                     "a_degrades_after_drift", "c_beats_best_daily_baseline"}
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "summary.md").read_text()
    assert "(c)/(b) mean NDCG@10" in text and "oracle (simulator truth)" in text
    assert all(f"| {name} |" in text for name in BASELINES)
    assert result["summary"] == summary
    assert not (out / "data" / "replay").exists()  # no replay reservoir any more


def test_refuses_to_delete_a_folder_that_is_not_a_timeline_run(timeline, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(timeline.TimelineError, match="does not hold a timeline run"):
        timeline.prepare_out_dir(tmp_path, overwrite=True)
    with pytest.raises(timeline.TimelineError, match="--overwrite"):
        timeline.prepare_out_dir(tmp_path, overwrite=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_bad_arguments_fail_with_a_named_reason(timeline, params_file, tmp_path):
    from liveloop.config import load_config

    cfg = load_config(params_file, overrides={"simulate.days": 5, "simulate.drift_day": 0,
                                              "simulate.scenario": "seasonal-shift"})
    with pytest.raises(timeline.TimelineError, match="drift day must fall in 2..4"):
        timeline.run_timeline(cfg, tmp_path / "a", steps=1)
    with pytest.raises(timeline.TimelineError, match="steps must be >= 0"):
        timeline.run_timeline(cfg, tmp_path / "b", steps=-1)
    with pytest.raises(timeline.TimelineError, match="full_steps"):
        timeline.run_timeline(cfg, tmp_path / "c", steps=1, full_steps=-1)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_recovery_is_counted_in_batches_after_the_drift(timeline):
    days = [1, 2, 3, 4, 5, 6]
    oracle = [0.5] * 6
    # pre-drift NDCG/oracle = 0.8; drops on the drift day (4), back within 5% two batches later
    ndcg = [0.4, 0.4, 0.4, 0.2, 0.3, 0.39]
    assert timeline.recovery_days(ndcg, oracle, days, drift_day=4, tolerance=0.05) == 2
    assert timeline.recovery_days([0.4, 0.4, 0.4, 0.2, 0.2, 0.2], oracle, days, 4, 0.05) is None


def test_summary_compares_with_the_best_daily_baseline_and_the_oracle(timeline):
    series = lambda xs: {"ndcg@10": xs, "hr@10": xs}
    strategy = lambda xs, samples, seconds: {**series(xs), "train_samples": samples, "train_examples": samples,
                                             "train_seconds": seconds}
    result = {"k": 10, "drift_day": 2, "eval_days": [1, 2],
              "strategies": {"stale": strategy([0.2, 0.1], 0, 0.0), "full_retrain": strategy([0.2, 0.3], 100, 10.0),
                             "incremental": strategy([0.2, 0.3], 50, 1.0)},
              "baselines": {"item_knn": series([0.3, 0.1]), "mf_als": series([0.1, 0.2])},
              "oracle": series([0.5, 0.5])}
    s = timeline.summarise(result, 0.05)
    assert s["best_daily_baseline_mean_ndcg@10"] == pytest.approx(0.25)  # 0.3 on day 1, 0.2 on day 2
    assert s["best_baseline_overall"] == "item_knn"
    assert s["strategies"]["incremental"]["vs_best_daily_baseline"] == pytest.approx(1.0)
    assert s["strategies"]["incremental"]["vs_oracle"] == pytest.approx(0.5)
    assert s["wall_ratio_c_over_b"] == pytest.approx(0.1) and s["sample_ratio_c_over_b"] == pytest.approx(0.5)
    assert s["goals"]["a_degrades_after_drift"] and s["goals"]["c_wall_at_most_10pct_of_b"]
    # a stable world has no drift: the whole run is "before", recovery and the drift goals do not apply
    stable = timeline.summarise({**result, "drift_day": None}, 0.05)
    incremental = stable["strategies"]["incremental"]
    assert incremental["pre_drift_ndcg@10"] == pytest.approx(0.25) and incremental["post_drift_ndcg@10"] is None
    assert incremental["recovery_days"] is None and stable["goals"]["c_recovers_within_2_batches"] is None
    assert stable["goals"]["a_degrades_after_drift"] is None and stable["quality_ratio_c_over_b"] == pytest.approx(1.0)
    assert "n/a" in timeline.markdown_summary({**result, "drift_day": None, "summary": stable, "days": ["d0", "d1", "d2"],
                                               "complete": True})
