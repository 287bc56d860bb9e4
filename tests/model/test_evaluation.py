"""Evaluation on a small simulated world: a fresh model is not worse than the frozen encoder it starts from, and
train -> evaluate scores the model, the baselines and the oracle on the same targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from liveloop.config import load_config
from liveloop.data.batches import concat_batches, read_batch
from liveloop.data.simulator import simulate
from liveloop.evaluation import evaluate_model
from liveloop.evaluation.evaluate import FROZEN, MODEL, ORACLE, FrozenEncoderScorer, RecommenderScorer, score_all
from liveloop.evaluation.protocol import next_window
from liveloop.model import Recommender
from liveloop.model.vectors import TextEncoder
from liveloop.training import train
from liveloop.workspace import Workspace

SMALL = {
    "simulate.days": 3, "simulate.n_users": 120, "simulate.n_items": 60, "simulate.n_hosts": 4,
    "simulate.rooms_per_day": 3, "simulate.items_per_room": 15,
    "model.history_window": 10, "model.seq_dim": 16, "model.rank_candidates": 40,
    "train.steps": 20, "train.batch_size": 32, "train.rank_trees": 20,
    "train.max_rank_groups": 200, "train.max_ctr_rows": 3000, "train.device": "cpu",
    "evaluate.bootstrap_samples": 50, "evaluate.mf_iterations": 2, "evaluate.mf_factors": 8,
}
BASELINES = {"popularity", "repeat_count", "repeat_recency", "item_knn", "mf_als", FROZEN}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    (root / "params.yaml").write_text((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    state = tmp_path_factory.getbasetemp() / "liveloop-state"
    cfg = load_config(root / "params.yaml", {**SMALL, "paths.state": str(state)})
    ws = Workspace.from_config(cfg)
    days = simulate(cfg.simulate, cfg.seed, ws.accepted, ws.simulator_truth)
    encoder = TextEncoder(cache_dir=state / "vectors")
    return {"root": root, "cfg": cfg, "ws": ws, "days": days, "encoder": encoder}


def test_fresh_model_is_not_worse_than_the_frozen_encoder(world):
    cfg, days, encoder = world["cfg"], world["days"], world["encoder"]
    history = concat_batches(days[:-1])
    split = next_window(history, read_batch(days[-1]), max_users=cfg.evaluate.max_users, seed=cfg.seed)
    rec = Recommender.from_config(cfg.model, "cpu", seed=cfg.seed, encoder=encoder)
    assert rec.ranker is None
    result, _ = score_all([RecommenderScorer(MODEL, rec, split), FrozenEncoderScorer(encoder, split, cfg.model.history_window)],
                          split, cfg.evaluate, cfg.seed)
    models = result["models"]
    assert result["setup"]["users"] > 10
    assert models[MODEL]["ndcg@10"] >= models[FROZEN]["ndcg@10"] - 0.02, models


@pytest.mark.slow
def test_train_then_evaluate_scores_model_baselines_and_oracle(world):
    cfg, days, ws = world["cfg"], world["days"], world["ws"]
    model_dir = train(cfg, ws, days[:-1], "scratch", ws.candidates / "m").model_dir
    out = world["root"] / "eval.json"
    result = evaluate_model(cfg, model_dir, days[:-1], days[-1], truth_dir=ws.simulator_truth,
                            out_json=out, out_md=world["root"] / "eval.md")
    models = result["models"]
    assert {MODEL, ORACLE} | BASELINES == set(models)
    for name, metrics in models.items():
        for key in ("hr@10", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr", "coverage@10"):
            assert 0.0 <= metrics[key] <= 1.0, (name, key)
        assert metrics["recall@50"] >= metrics["recall@10"]
    assert result["setup"]["auc_pairs"]["source"] == "impressions"
    assert models[MODEL]["auc"] > 0.5, models[MODEL]  # above chance on next-day impressions of a tiny world
    assert models[ORACLE]["ndcg@10"] > models["popularity"]["ndcg@10"]
    assert "| model |" in (world["root"] / "eval.md").read_text()
