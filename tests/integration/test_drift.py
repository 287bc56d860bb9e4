"""Real Evidently runs on simulated batches: stable days give no drift, a price shock gives drift naming the repricing;
the HTML report and the JSON verdict are written; the CLI exits 0 either way and 1 with a clear error on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.config import DriftConfig, SimulateConfig
from liveloop.data.simulator import simulate
from liveloop.monitoring import DriftInputError, check_drift
from liveloop.monitoring.embeddings import TextEncoder

SMALL = dict(days=4, drift_day=3, n_users=300, n_items=200)
# Small samples keep each check to a few seconds; thresholds stay the shipped defaults.
FAST = DriftConfig(embedding_sample=60, max_rows=5000)


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("drift")
    return {
        scenario: simulate(SimulateConfig(scenario=scenario, **SMALL), 3, root / scenario, root / f"{scenario}-truth")
        for scenario in ("stable", "price-shock")
    }


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    """One loaded text encoder for the module's checks (loading it is the slowest part of a check)."""
    return TextEncoder("all-MiniLM-L6-v2", FAST.embedding_max_length)


def _assert_written(verdict: dict, out: Path) -> None:
    assert set(verdict) >= {"drift", "signals", "reasons"}
    assert isinstance(verdict["drift"], bool) and isinstance(verdict["reasons"], list)
    assert set(verdict["signals"]) >= {"tabular", "new_values", "embeddings"}
    assert set(verdict["signals"]["embeddings"]) == set(FAST.embedding_kinds)
    on_disk = json.loads((out / "drift.json").read_text())
    assert on_disk["drift"] == verdict["drift"] and on_disk["reasons"] == verdict["reasons"]
    html = (out / "drift_report.html").read_text()
    assert len(html) > 100_000  # Evidently's renderer plus the widgets, not an empty shell
    assert "price" in html and "jensenshannon" in html


@pytest.mark.slow
def test_stable_days_do_not_drift(batches, encoder, tmp_path):
    days = batches["stable"]
    verdict = check_drift(days[:3], days[3], tmp_path, FAST, text_encoder=encoder)
    _assert_written(verdict, tmp_path)
    assert verdict["drift"] is False, verdict["reasons"]
    assert verdict["signals"]["new_values"]["category"] == 0.0


@pytest.mark.slow
def test_each_batch_is_encoded_once_then_read_from_the_cache(batches, encoder, tmp_path):
    days = batches["stable"]
    cache = tmp_path / "cache"
    first = check_drift(days[:2], days[2], tmp_path / "a", FAST, cache_dir=cache, text_encoder=encoder)
    assert len(list(cache.glob("*.safetensors"))) == 3
    assert "embeddings: 0/2 reference batch(es) read from cache" in first["notes"]
    # the next day: its window holds batches encoded before, so only the new batch is encoded
    second = check_drift(days[1:3], days[3], tmp_path / "b", FAST, cache_dir=cache, text_encoder=encoder)
    assert "embeddings: 2/2 reference batch(es) read from cache" in second["notes"]
    assert len(list(cache.glob("*.safetensors"))) == 4
    # a different setting is a different key: nothing stale is served
    other = FAST.model_copy(update={"embedding_sample": 30})
    third = check_drift(days[1:3], days[3], tmp_path / "c", other, cache_dir=cache, text_encoder=encoder)
    assert "embeddings: 0/2 reference batch(es) read from cache" in third["notes"]
    assert third["signals"]["embeddings"]["comments"]["n_current"] == 30


@pytest.mark.slow
def test_price_shock_drifts_and_names_the_repricing(batches, encoder, tmp_path):
    days = batches["price-shock"]
    verdict = check_drift(days[:3], days[3], tmp_path, FAST, text_encoder=encoder)
    _assert_written(verdict, tmp_path)
    assert verdict["drift"] is True
    assert any("repriced since the reference" in r for r in verdict["reasons"]), verdict["reasons"]
    assert verdict["signals"]["repriced_share"] > 0.1


def _cli(params_file: Path, args: list[str]):
    params = params_file.read_text() + "\n"
    # the test's small sample sizes, through the same params.yaml the CLI reads
    params_file.write_text(params.replace("embedding_sample: 100", "embedding_sample: 60"))
    return CliRunner().invoke(app, ["drift", *args, "--params", str(params_file)])


@pytest.mark.slow
def test_cli_exits_zero_with_and_without_drift(batches, params_file, tmp_path):
    for scenario, expected in (("stable", "drift: no"), ("price-shock", "drift: yes")):
        days = batches[scenario]
        out = tmp_path / scenario
        refs = [arg for d in days[:3] for arg in ("--reference", str(d))]
        result = _cli(params_file, [*refs, "--current", str(days[3]), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert expected in result.output
        assert (out / "drift_report.html").exists() and (out / "drift.json").exists()


def test_cli_bad_input_is_one_clear_error(batches, params_file, tmp_path):
    days = batches["stable"]
    result = _cli(params_file, ["--reference", str(days[0]), "--current", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: current batch" in result.output and "is not a folder" in result.output
    assert "Traceback" not in result.output


def test_current_batch_inside_the_reference_is_refused(batches, tmp_path):
    days = batches["stable"]
    with pytest.raises(DriftInputError, match="also in the reference"):
        check_drift(days[:2], days[1], tmp_path, FAST)


def test_unknown_policy_column_is_refused(batches, tmp_path):
    days = batches["stable"]
    cfg = DriftConfig(thresholds={"column_drift": {"colour": 0.1}})
    with pytest.raises(DriftInputError, match=r"unknown columns \['colour'\]"):
        check_drift(days[:1], days[1], tmp_path, cfg)


@pytest.mark.slow
def test_champion_signals_compare_the_champion_with_itself_on_the_last_reference_batch(batches, encoder, tmp_path):
    """Performance drift: the champion's NDCG on the new batch vs the same protocol on the last reference batch (never
    a number from another protocol); with one reference batch there is nothing to compare and the report says so."""
    from liveloop.config import EvaluateConfig, ModelConfig
    from liveloop.model.recommender import Recommender

    days, model_cfg = batches["stable"], ModelConfig()
    champion = tmp_path / "champion"
    rec = Recommender.from_config(model_cfg, device="cpu", seed=0)
    rec.state = {**rec.state, "metrics": {"ndcg@10": 0.999}}  # a number from another protocol: never the baseline
    rec.save(champion)
    cfg = FAST.model_copy(update={"champion_signals": True, "eval_users": 60})
    verdict = check_drift(days[:3], days[3], tmp_path / "three", cfg, champion_dir=champion, model_cfg=model_cfg,
                          text_encoder=encoder, evaluate_cfg=EvaluateConfig())
    perf = verdict["signals"]["performance"]["ndcg@10"]
    assert perf["baseline_source"] == "on the last reference batch" and perf["baseline"] != 0.999
    assert 0.0 < perf["baseline"] <= 1.0 and 0.0 <= perf["current"] <= 1.0
    assert perf["relative_drop"] == pytest.approx((perf["baseline"] - perf["current"]) / perf["baseline"])
    assert set(verdict["signals"]["prediction"]) and "Champion score distribution" in (
        tmp_path / "three" / "drift_report.html").read_text()
    one = check_drift(days[2:3], days[3], tmp_path / "one", cfg, champion_dir=champion, model_cfg=model_cfg,
                      text_encoder=encoder, evaluate_cfg=EvaluateConfig())
    assert not one["signals"].get("performance")
    assert "performance drift not checked: fewer than 2 reference batches" in one["notes"]
