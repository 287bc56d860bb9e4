"""The loop's decisions without Prefect, DVC or a model: retrain plan, replay day, metric assembly, the
paired-bootstrap gate, short-window drift settings, and what commit records on a rejection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from liveloop import loop, registry
from liveloop.config import Config, DriftConfig, PromotionConfig
from liveloop.evaluation.promotion import gate, paired_difference_bounds
from liveloop.workspace import Workspace

NO_DRIFT = loop.DriftVerdict(False, [])


def _cfg(**loop_cfg) -> Config:
    cfg = Config()
    cfg.loop = cfg.loop.model_copy(update=loop_cfg)
    return cfg


# ------------------------------------------------------------------------------------------------ retrain plan
def test_first_batch_trains_from_scratch():
    plan = loop.plan_retrain(_cfg(retrain_every=0), accepted_before=0, has_champion=False, drift=NO_DRIFT)
    assert plan.train and plan.init_from == "scratch" and plan.reasons == ["no champion yet"]


def test_no_drift_off_schedule_keeps_the_champion():
    plan = loop.plan_retrain(_cfg(retrain_every=3), accepted_before=4, has_champion=True, drift=NO_DRIFT)
    assert not plan.train and plan.reasons == []
    assert not loop.plan_retrain(_cfg(retrain_every=0), accepted_before=3, has_champion=True, drift=NO_DRIFT).train


def test_drift_schedule_and_force_each_give_a_reason():
    drift = loop.DriftVerdict(True, ["category drifted", "new hosts"])
    plan = loop.plan_retrain(_cfg(retrain_every=2), accepted_before=4, has_champion=True, drift=drift, force=True)
    assert plan.train and plan.init_from == "champion"
    assert plan.reasons == ["drift: category drifted; new hosts", "schedule (every 2 batches)", "forced"]


def test_reference_window_is_the_batches_right_before():
    history = [Path(f"2026-01-0{i}") for i in range(1, 6)]
    assert [p.name for p in loop.reference_window(history, 3)] == ["2026-01-03", "2026-01-04", "2026-01-05"]
    assert loop.reference_window(history[:1], 3) == history[:1]


# ------------------------------------------------------------------------------------------------- replay day
def test_replay_day_skips_the_champions_own_day_and_days_without_holdout():
    ref = ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert loop.choose_replay_day(ref, {"2026-01-05"}, set(ref)) == "2026-01-06"
    assert loop.choose_replay_day(ref, set(), {"2026-01-07"}) == "2026-01-07"
    assert loop.choose_replay_day(ref, {"2026-01-07"}, {"2026-01-07"}) is None
    assert loop.choose_replay_day([], set(), set()) is None


def test_evaluation_jobs_cover_what_the_gate_compares():
    first = loop.evaluation_jobs("d2", Path("cand"), None, [Path("d1")], Path("tr"), Path("ho"), None)
    assert [j.key for j in first] == ["candidate/new"] and first[0].history == [Path("d1"), Path("tr")]
    jobs = loop.evaluation_jobs("d2", Path("cand"), Path("champ"), [Path("d1")], Path("tr"), Path("ho"),
                                ([Path("d0"), Path("tr1")], Path("ho1")), baselines=True)
    assert [j.key for j in jobs] == ["candidate/new", "champion/new", "candidate/replay", "champion/replay"]
    assert [j.baselines for j in jobs] == [True, False, False, False]  # baselines only decorate the report
    assert jobs[2].test == jobs[3].test == Path("ho1") and jobs[3].model_dir == Path("champ")


# ------------------------------------------------------------------------------------------- metric assembly
def _result(ndcg: float, per_user: list[float], test: str = "ho", baselines: dict | None = None) -> dict:
    return {"setup": {"test_dir": test, "users": len(per_user)},
            "models": {"model": {"ndcg@10": ndcg}, **(baselines or {})}, "per_user": {"model": per_user}}


def test_assemble_pairs_the_users_of_each_set():
    ev = loop.assemble_metrics({
        "candidate/new": _result(0.5, [1.0, 0.0], baselines={"popular": {"ndcg@10": 0.2}}),
        "champion/new": _result(0.25, [0.5, 0.0]),
        "candidate/replay": _result(0.3, [0.3], test="r"),
        "champion/replay": _result(0.4, [0.4], test="r"),
    }, "ndcg@10")
    assert ev.candidate == {"new": {"ndcg@10": 0.5}, "replay": {"ndcg@10": 0.3}}
    assert ev.champion == {"new": {"ndcg@10": 0.25}, "replay": {"ndcg@10": 0.4}}
    assert ev.per_user["new"]["ndcg@10"] == ([1.0, 0.0], [0.5, 0.0])
    assert ev.baselines == {"popular": {"ndcg@10": 0.2}}
    first = loop.assemble_metrics({"candidate/new": _result(0.5, [1.0, 0.0])}, "ndcg@10")
    assert first.champion is None and first.per_user == {}


def test_assemble_refuses_evaluations_on_different_users():
    with pytest.raises(loop.LoopError, match="same users"):
        loop.assemble_metrics({"candidate/new": _result(0.5, [1.0, 0.0]), "champion/new": _result(0.4, [0.4])},
                              "ndcg@10")
    with pytest.raises(loop.LoopError, match="no candidate evaluation"):
        loop.assemble_metrics({"champion/new": _result(0.4, [0.4])}, "ndcg@10")


# -------------------------------------------------------------------------------------------- the noisy gate
GATE = PromotionConfig(metrics=["ndcg@10"], sets=["new", "replay"], max_relative_drop=0.0, max_absolute_drop=0.01,
                       confidence=0.9, bootstrap_samples=2000)


def _pair(mean_diff: float, spread: float, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    champ = rng.uniform(0.2, 0.6, n)
    diff = rng.normal(0, spread, n)
    diff = diff - diff.mean() + mean_diff
    return (champ + diff).tolist(), champ.tolist()


def _evaluation(pair) -> loop.Evaluation:
    cand, champ = pair
    return loop.Evaluation({"new": {"ndcg@10": float(np.mean(cand))}}, {"new": {"ndcg@10": float(np.mean(champ))}},
                           {"new": {"ndcg@10": pair}})


def test_bootstrap_bounds_are_seeded_and_bracket_the_mean():
    cand, champ = _pair(0.02, 0.05)
    first = paired_difference_bounds(cand, champ, 0.9, 1000, seed=3)
    assert first == paired_difference_bounds(cand, champ, 0.9, 1000, seed=3)
    mean, low, high = first
    assert mean == pytest.approx(0.02) and low < mean < high
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference_bounds([0.1, 0.2], [0.1], 0.9, 100, 0)


def test_a_small_consistent_drop_within_tolerance_is_promoted():
    decision = loop.decide(_evaluation(_pair(-0.004, 0.005)), Config(promotion=GATE), model_dir=Path("m"),
                           parent="v0001", data_versions={"d": "md5"})
    assert decision.promote, decision.reasons
    check = decision.checks[0]
    assert check["method"] == "paired bootstrap" and check["users"] == 40 and check["confidence"] == 0.9
    low, high = check["interval"]
    assert -0.01 < low < check["diff"] < high
    assert "ruled out" in decision.reasons[0] and "cannot" not in decision.reasons[0]


def test_the_same_mean_drop_with_noisy_users_is_not_promoted():
    """The point estimates alone pass (a 0.004 drop, tolerance 0.01); the paired bound says a larger drop is likely."""
    pair = _evaluation(_pair(-0.004, 0.15))
    point_ok, _ = gate(pair.candidate, pair.champion, GATE)
    assert point_ok
    decision = loop.decide(pair, Config(promotion=GATE), model_dir=Path("m"), parent="v0001",
                           data_versions={"d": "md5"})
    assert not decision.promote and "cannot be ruled out" in decision.reasons[0]
    assert decision.checks[0]["interval"][0] < -0.01


def test_a_clear_regression_is_rejected_and_a_gain_promoted():
    cfg = Config(promotion=GATE)
    worse = loop.decide(_evaluation(_pair(-0.05, 0.03)), cfg, model_dir=Path("m"), parent="v1", data_versions={})
    better = loop.decide(_evaluation(_pair(0.05, 0.03)), cfg, model_dir=Path("m"), parent="v1", data_versions={})
    assert not worse.promote and better.promote


def test_without_per_user_values_the_gate_falls_back_to_point_estimates():
    ev = loop.Evaluation({"new": {"ndcg@10": 0.30}}, {"new": {"ndcg@10": 0.28}}, {})
    decision = loop.decide(ev, Config(promotion=GATE), model_dir=Path("m"), parent="v1", data_versions={})
    assert decision.promote and decision.checks[0]["method"] == "point estimate"
    assert any("champion has no metrics" in r for r in decision.reasons)  # replay never measured: said so


def test_first_model_is_promoted():
    ev = loop.Evaluation({"new": {"ndcg@10": 0.1}}, None, {})
    decision = loop.decide(ev, Config(), model_dir=Path("m"), parent=None, data_versions={"d": "md5"})
    assert decision.promote and decision.reasons == ["no champion yet: the first model is promoted"]


# ------------------------------------------------------------------------------------------------ drift policy
def test_short_reference_windows_tolerate_more_unseen_values():
    cfg = DriftConfig()
    assert loop.drift_config_for(cfg, 3, 3) is cfg and loop.drift_config_for(cfg, 5, 3) is cfg
    one, two = loop.drift_config_for(cfg, 1, 3).thresholds, loop.drift_config_for(cfg, 2, 3).thresholds
    host = cfg.thresholds.new_value_share["host_id"]
    assert one.new_value_share["host_id"] == pytest.approx(1 - (1 - host) ** 3)
    assert host < two.new_value_share["host_id"] < one.new_value_share["host_id"] < 1
    # measured on stable simulator days with a one-day reference: 21-49% of events on a host unseen the day before;
    # a host churn: 67-90%; a new category: 15-18% of events (docs/reliability.md)
    assert 0.49 < one.new_value_share["host_id"] < 0.67 and one.new_value_share["category"] < 0.15
    limits = cfg.thresholds.column_drift
    assert one.column_drift["host_id"] == pytest.approx(limits["host_id"] * 3 ** 0.5)
    assert one.column_drift["event_type"] == limits["event_type"]  # the funnel mix does not rotate with the rooms
    assert one.interest_drop == cfg.thresholds.interest_drop  # leave-one-out: already window-normalised
    assert loop.drift_config_for(cfg.model_copy(update={"thresholds": cfg.thresholds.model_copy(
        update={"new_value_share": {"host_id": 2.0}})}), 1, 3).thresholds.new_value_share == {"host_id": 2.0}


def test_short_window_thresholds_silence_a_stable_day_but_not_a_host_churn():
    from liveloop.monitoring.policy import decide

    cfg = loop.drift_config_for(DriftConfig(), 1, 3)
    stable = {"new_values": {"category": 0.0, "host_id": 0.39}}
    churn = {"new_values": {"category": 0.0, "host_id": 0.69}}
    assert decide(stable, DriftConfig().thresholds)[0], "the full-window policy raises a false alarm here"
    assert decide(stable, cfg.thresholds) == (False, [])
    assert decide(churn, cfg.thresholds)[0]


# ----------------------------------------------------------------------------------------------------- commit
def _candidate(root: Path, name: str) -> Path:
    d = root / "candidates" / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(name.encode())
    (d / "state.json").write_text(json.dumps({"parent": "/some/path/v0001", "data_versions": {name: None}}))
    return d


def test_a_rejected_candidate_is_recorded_with_its_gate_and_lineage(tmp_path):
    ws = Workspace(root=tmp_path, state=tmp_path / ".liveloop")
    v1 = registry.register(ws, _candidate(tmp_path, "d1"), parent=None, data_versions={"d1": "aaa.dir"},
                           params={}, metrics={})["version"]
    registry.promote(ws, v1)
    ev = loop.Evaluation({"new": {"ndcg@10": 0.1}}, {"new": {"ndcg@10": 0.3}}, {})
    decision = loop.decide(ev, Config(promotion=GATE), model_dir=_candidate(tmp_path, "d2"), parent=v1,
                           data_versions={"d2": "bbb.dir"})
    result = loop.commit(Config(), ws, decision)
    assert not decision.promote and result.champion == v1 and result.model_data_version is None
    again = loop.commit(Config(), ws, decision)  # a retried commit finds the same version
    assert again.version == result.version and len(registry.load_registry(ws)) == 2
    entry = registry.get_version(ws, result.version)
    assert entry["status"] == "rejected" and entry["gate"] == decision.checks
    state = json.loads((ws.root / entry["path"] / "state.json").read_text())
    assert state["parent"] == entry["parent"] == v1
    assert state["data_versions"] == entry["data_versions"] == {"d2": "bbb.dir"}
    assert state["all_data_versions"] == entry["all_data_versions"] == {"d1": "aaa.dir", "d2": "bbb.dir"}


def test_batch_markdown_shows_the_decision_and_intervals():
    ev = _evaluation(_pair(0.01, 0.02))
    decision = loop.decide(ev, Config(promotion=GATE), model_dir=Path("m"), parent="v1", data_versions={})
    summary = {"batch": "2026-01-06", "validation": {"accepted": True, "failures": []}, "drift": False,
               "drift_reasons": [], "train_reasons": ["schedule (every 1 batches)"], "candidate": "v0002",
               "metrics": {"candidate": ev.candidate, "champion": ev.champion},
               "decision": {"promote": True, "reasons": decision.reasons, "checks": decision.checks},
               "champion_before": "v0001", "champion_after": "v0002", "report_metrics": ["ndcg@10", "auc"]}
    md = loop.batch_markdown(summary)
    assert "**Decision:** promote v0002" in md and "90% bounds [" in md and "v0001 -> v0002" in md
    assert "| candidate | new |" in md and "| champion | new |" in md


def test_loop_command_names_a_bad_batch_folder(params_file, tmp_path):
    from typer.testing import CliRunner

    from liveloop.cli import app

    result = CliRunner().invoke(app, ["loop", str(tmp_path / "2026-01-09"), "-p", str(params_file)])
    assert result.exit_code == 2 and "2026-01-09" in result.output
    assert not (tmp_path / "models" / "registry.json").exists()  # a failed request changes nothing
