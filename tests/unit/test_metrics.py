"""Metrics against hand-computed values, the baselines on tiny data where the right answer is obvious,
the protocols' split/targets, and the promotion gate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from liveloop.config import EvaluateConfig, PromotionConfig
from liveloop.data.schema import conform, empty
from liveloop.evaluation import metrics as M
from liveloop.evaluation import promotion_decision
from liveloop.evaluation.baselines import (
    ALSBaseline,
    Interactions,
    ItemKNNBaseline,
    PopularityBaseline,
    RepeatBaseline,
)
from liveloop.evaluation.evaluate import _ranks_and_top, score_all
from liveloop.evaluation.protocol import ProtocolError, next_window, time_split

LOG2 = math.log2


# ------------------------------------------------------------------------------------------------------- metrics
def test_rank_metrics_match_hand_computed_values():
    ranks = [np.array([1]), np.array([3, 12]), np.array([60])]
    assert M.hit_rate(ranks, 10).tolist() == [1.0, 1.0, 0.0]
    assert M.recall(ranks, 10).tolist() == [1.0, 0.5, 0.0]
    assert M.recall(ranks, 50).tolist() == [1.0, 1.0, 0.0]
    ndcg = M.ndcg(ranks, 10)
    assert ndcg[0] == pytest.approx(1.0)
    assert ndcg[1] == pytest.approx((1 / LOG2(4)) / (1 / LOG2(2) + 1 / LOG2(3)))
    assert ndcg[2] == 0.0
    assert M.ndcg(ranks, 50)[1] == pytest.approx((1 / LOG2(4) + 1 / LOG2(13)) / (1 / LOG2(2) + 1 / LOG2(3)))
    assert M.reciprocal_rank(ranks).tolist() == pytest.approx([1.0, 1 / 3, 1 / 60])


def test_rank_metrics_reject_bad_ranks():
    with pytest.raises(ValueError, match="1-based"):
        M.hit_rate([np.array([0])], 10)
    with pytest.raises(ValueError, match="at least one target"):
        M.ndcg([np.array([], dtype=int)], 10)


def test_auc_counts_ties_as_half():
    # pairs (pos, neg): (0.9,0.1)=1 (0.9,0.5)=1 (0.5,0.1)=1 (0.5,0.5)=0.5 -> 3.5 / 4
    assert M.auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(0.875)
    assert M.auc(np.array([1, 0]), np.array([0.2, 0.8])) == 0.0
    assert M.auc(np.array([1, 1]), np.array([0.2, 0.8])) is None
    with pytest.raises(ValueError, match="shape"):
        M.auc(np.array([1, 0]), np.array([0.1]))


def test_coverage_and_bootstrap():
    assert M.coverage(np.array([[0, 1], [1, 2]]), 8) == pytest.approx(3 / 8)
    better = np.array([1.0, 0.5, 0.8, 0.6] * 50)
    low, high = M.paired_bootstrap_ratio(better, better / 2, samples=200, seed=0)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)
    low, high = M.paired_bootstrap_ratio(np.r_[np.ones(100), np.zeros(100)], np.full(200, 0.5), samples=500, seed=0)
    assert low < 1.0 < high


def test_ties_get_the_shared_random_order_not_the_target_first():
    scores = np.zeros((1, 4))
    tie_key = np.array([3, 0, 2, 1])  # candidate 1 first, then 3, 2, 0
    ranks, top = _ranks_and_top(scores, [np.array([0, 1])], tie_key, 2)
    assert ranks[0].tolist() == [4, 1]
    assert top.tolist() == [[1, 3]]


# ------------------------------------------------------------------------------------------------------- tiny data
def _event(user, item, day, hour=12, kind="purchase", qty=1.0):
    return {"event_id": f"{user}-{item}-{day}-{hour}-{kind}", "ts": pd.Timestamp("2026-01-01") + pd.Timedelta(days=day, hours=hour),
            "user_id": user, "item_id": item, "stream_id": None, "event_type": kind, "text": None,
            "quantity": qty, "price": 1.0}


def _tables(events: list[dict], items: list[str], streams: pd.DataFrame | None = None) -> dict:
    ev = conform(pd.DataFrame(events), "events")
    it = conform(pd.DataFrame({"item_id": items, "title": [f"item {i}" for i in items], "description": None,
                               "category": "c", "brand": None, "price": 1.0,
                               "first_seen": pd.Timestamp("2026-01-01")}), "items")
    users = conform(pd.DataFrame({"user_id": sorted(ev["user_id"].unique()), "profile": None}), "users")
    return {"items": it, "streams": empty("streams") if streams is None else streams, "users": users, "events": ev}


@pytest.fixture
def history() -> pd.DataFrame:
    # u1 bought a three times (old) and b once (recent); everyone loves p; c and d are always bought together
    rows = [_event("u1", "a", d) for d in (1, 2, 3)] + [_event("u1", "b", 8)]
    rows += [_event(f"v{i}", "p", 9) for i in range(4)] + [_event("v9", "q", 1)] * 1
    rows += [_event(f"w{i}", it, 5) for i in range(3) for it in ("c", "d")] + [_event("u2", "c", 6)]
    rows += [_event("u1", "z", 7, qty=-1.0)]  # a cancellation is not a positive
    return conform(pd.DataFrame(rows), "events")


AS_OF = pd.Timestamp("2026-01-11")
ITEMS = ["a", "b", "c", "d", "p", "q", "z", "new"]


def _order(scorer, user):
    scores = scorer.score([user], ITEMS)[0]
    return [ITEMS[j] for j in np.argsort(-scores, kind="stable")]


def test_popularity_ranks_recent_hits_first(history):
    data = Interactions.from_events(history, AS_OF, popularity_days=3)
    order = _order(PopularityBaseline(data), "anyone")
    assert order[0] == "p"  # 4 buyers in the window
    assert order.index("q") > order.index("c")  # q: 1 old purchase; c: 4 old purchases
    assert "z" not in data.item_index  # cancellations never count


def test_repeat_baselines_order_own_items_by_count_or_recency(history):
    data = Interactions.from_events(history, AS_OF, popularity_days=3)
    assert _order(RepeatBaseline(data, "count"), "u1")[:3] == ["a", "b", "p"]
    assert _order(RepeatBaseline(data, "recency"), "u1")[:3] == ["b", "a", "p"]
    assert _order(RepeatBaseline(data, "count"), "stranger")[0] == "p"  # no history: popularity
    with pytest.raises(ValueError, match="order"):
        RepeatBaseline(data, "random")


def test_item_knn_recommends_the_co_purchased_item(history):
    data = Interactions.from_events(history, AS_OF, popularity_days=3)
    assert _order(ItemKNNBaseline(data, neighbours=5), "u2")[0] == "d"


def test_als_recommends_the_co_purchased_item(history):
    data = Interactions.from_events(history, AS_OF, popularity_days=3)
    als = ALSBaseline(data, factors=4, iterations=15, regularization=0.01, alpha=10.0, seed=0)
    order = _order(als, "u2")
    assert order.index("d") < order.index("a") and order.index("d") < order.index("b")
    assert np.isfinite(als.user_factors).all()


def test_baselines_cope_with_an_empty_history():
    data = Interactions.from_events(conform(pd.DataFrame([_event("u", "a", 1)]), "events").iloc[:0], AS_OF, 3)
    for scorer in (PopularityBaseline(data), RepeatBaseline(data, "count"), ItemKNNBaseline(data, 5),
                   ALSBaseline(data, 4, 2, 0.1, 1.0, 0)):
        assert scorer.score(["u"], ["a", "b"]).shape == (1, 2)


# ------------------------------------------------------------------------------------------------------- protocols
def test_time_split_targets_first_item_of_returning_users():
    rows = [_event("u1", "a", d) for d in range(1, 10)]  # 9 positives before the cut
    rows += [_event("u1", "b", 11, hour=9), _event("u1", "c", 11, hour=10)]  # first after the cut: b
    rows += [_event("newcomer", "a", 12)]  # no history: not a test user
    split = time_split(_tables(rows, ITEMS), quantile=0.75)
    assert split.as_of > pd.Timestamp("2026-01-08") and split.as_of <= pd.Timestamp("2026-01-12 09:00")
    assert split.user_ids == ["u1"] and split.targets == [["b"]]
    assert split.history["events"]["ts"].max() < split.as_of
    assert set(split.candidate_ids) == set(ITEMS)
    assert split.target_slices()["new"][0].tolist() == [True]
    assert split.target_slices()["cold"][0].tolist() == [True]  # nobody had b before the cut
    with pytest.raises(ProtocolError, match="quantile"):
        time_split(_tables(rows, ITEMS), quantile=1.0)


def test_time_split_marks_repeat_and_cold_targets():
    rows = [_event("u1", "a", d) for d in range(1, 8)] + [_event("u2", "a", 2), _event("u2", "b", 3)]
    rows += [_event("u1", "new", 12), _event("u2", "a", 12)]
    split = time_split(_tables(rows, ITEMS), quantile=0.85)  # cut between day 7 and day 12
    slices = split.target_slices()
    by_user = dict(zip(split.user_ids, range(2)))
    assert split.targets[by_user["u1"]] == ["new"] and slices["cold"][by_user["u1"]].tolist() == [True]
    assert split.targets[by_user["u2"]] == ["a"] and slices["repeat"][by_user["u2"]].tolist() == [True]


def test_next_window_restricts_candidates_to_live_items_and_refuses_overlap():
    hist = _tables([_event("u1", "a", 1), _event("u2", "c", 2)], ITEMS)
    # s0 ended before the test window (its items were live, just not now); s1 is live in it
    streams = conform(pd.DataFrame({"stream_id": ["s0", "s1"], "host_id": ["h", "h"], "title": ["earlier", "room"],
                                    "category": ["c", "c"],
                                    "start": [pd.Timestamp("2026-01-04"), pd.Timestamp("2026-01-05")],
                                    "end": [pd.Timestamp("2026-01-05"), pd.Timestamp("2026-01-06")],
                                    "item_ids": [["c", "d"], ["a", "b"]]}), "streams")
    test = _tables([_event("u1", "a", 4), _event("u1", "b", 4, hour=13), _event("u2", "c", 4),
                    _event("u2", "b", 4, kind="impression")], ITEMS, streams)
    split = next_window(hist, test)
    assert split.candidate_ids == ["a", "b"]
    assert split.user_ids == ["u1"] and split.targets == [["a", "b"]]  # c was not live, u2 wanted nothing live
    with pytest.raises(ProtocolError, match="history reaches"):
        next_window(test, test)
    with pytest.raises(ProtocolError, match="no events"):
        next_window(hist, {**test, "events": test["events"].iloc[:0]})


def test_score_all_gives_the_obvious_winner_perfect_metrics(history):
    rows = [_event("u1", "a", 12), _event("u2", "d", 12)]
    test = _tables(rows, ITEMS)
    hist = _tables(history.to_dict("records"), ITEMS)
    split = next_window(hist, test)

    class Cheat:
        name = "cheat"

        def score(self, user_ids, item_ids):
            wanted = {"u1": "a", "u2": "d"}
            return np.array([[1.0 if i == wanted[u] else 0.0 for i in item_ids] for u in user_ids])

    cfg = EvaluateConfig(user_batch_size=1)
    result, per_user = score_all([Cheat()], split, cfg, seed=0)
    metrics = result["models"]["cheat"]
    assert metrics["ndcg@10"] == 1.0 and metrics["mrr"] == 1.0 and metrics["recall@50"] == 1.0
    assert metrics["ndcg@10_repeat"] == 1.0 and metrics["ndcg@10_cold"] is None
    assert result["setup"]["slice_users"] == {"repeat": 1, "new": 1, "warm": 2, "cold": 0}
    assert per_user["cheat"].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------------------- promotion
GATE = PromotionConfig(metrics=["ndcg@10"], sets=["new", "replay"], max_relative_drop=0.05, max_absolute_drop=0.001)


def test_promotes_without_a_champion():
    assert promotion_decision({"new": {"ndcg@10": 0.1}}, None, GATE) == (True, ["no champion yet: the first model is promoted"])


def test_promotes_a_candidate_within_tolerance_on_both_sets():
    ok, reasons = promotion_decision({"new": {"ndcg@10": 0.30}, "replay": {"ndcg@10": 0.196}},
                                     {"new": {"ndcg@10": 0.28}, "replay": {"ndcg@10": 0.20}}, GATE)
    assert ok and "not worse" in reasons[0] and "within the allowed" in reasons[1]


def test_rejects_forgetting_on_the_replay_set():
    ok, reasons = promotion_decision({"new": {"ndcg@10": 0.40}, "replay": {"ndcg@10": 0.15}},
                                     {"new": {"ndcg@10": 0.28}, "replay": {"ndcg@10": 0.20}}, GATE)
    assert not ok and any("replay dropped from 0.2000 to 0.1500" in r for r in reasons)


def test_rejects_a_worse_candidate_and_one_missing_a_set():
    ok, reasons = promotion_decision({"new": {"ndcg@10": 0.20}}, {"new": {"ndcg@10": 0.28}, "replay": {"ndcg@10": 0.2}}, GATE)
    assert not ok
    assert any("new dropped" in r for r in reasons) and any("not evaluated on this set" in r for r in reasons)


def test_skips_sets_the_champion_never_had():
    ok, reasons = promotion_decision({"new": {"ndcg@10": 0.28}}, {"new": {"ndcg@10": 0.28}}, GATE)
    assert ok and any("champion has no metrics" in r for r in reasons)
    ok, reasons = promotion_decision({"new": {"ndcg@10": None}}, {"new": {"ndcg@10": 0.28}}, GATE)
    assert not ok and "no value" in reasons[0]
    with pytest.raises(TypeError):
        promotion_decision([0.3], None, GATE)


def test_default_gate_config_matches_the_evaluation_keys():
    gate = PromotionConfig()
    cfg = EvaluateConfig()
    names = {f"{m}@{k}" for m in ("ndcg", "recall", "hr") for k in cfg.ks}
    assert set(gate.metrics) <= names
    assert gate.sets == ["new", "replay"]  # the keys flows/live_loop.py passes


def test_time_split_caps_test_users_with_a_seeded_sample():
    rows = [_event(f"u{i}", "a", 1) for i in range(10)] + [_event(f"u{i}", "b", 12) for i in range(10)]
    rows += [_event("x", "a", d) for d in range(2, 9)]
    first = time_split(_tables(rows, ITEMS), quantile=0.6, max_users=4, seed=1)
    again = time_split(_tables(rows, ITEMS), quantile=0.6, max_users=4, seed=1)
    assert len(first.user_ids) == 4 and first.user_ids == again.user_ids == sorted(first.user_ids)


# ------------------------------------------------------------------------------------------------------- cross-check
def test_rank_metrics_agree_with_trec_eval_on_random_rankings():
    """Our rank-based metrics against trec_eval (pytrec_eval) on 200 random rankings: equal to 1e-6.

    Scores are distinct floats, so trec_eval's tie order (by document id) never matters."""
    import pytrec_eval  # dev extra: pytrec-eval-terrier
    rng = np.random.default_rng(7)
    qrels, run, ranks = {}, {}, []
    for q in range(200):
        n = int(rng.integers(5, 80))
        scores = rng.permutation(n).astype(float) + rng.random()  # distinct
        relevant = rng.choice(n, size=int(rng.integers(1, min(n, 12) + 1)), replace=False)
        qrels[f"q{q}"] = {f"d{j}": 1 for j in relevant}
        run[f"q{q}"] = {f"d{j}": float(scores[j]) for j in range(n)}
        order = np.argsort(-scores)
        rank_of = np.empty(n, dtype=int)
        rank_of[order] = np.arange(1, n + 1)
        ranks.append(rank_of[relevant])
    measures = {"ndcg_cut_10", "ndcg_cut_50", "recall_10", "recall_50", "recip_rank", "success_10"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = {"ndcg_cut_10": M.ndcg(ranks, 10), "ndcg_cut_50": M.ndcg(ranks, 50), "recall_10": M.recall(ranks, 10),
            "recall_50": M.recall(ranks, 50), "recip_rank": M.reciprocal_rank(ranks), "success_10": M.hit_rate(ranks, 10)}
    for measure, values in ours.items():
        expected = np.array([ref[f"q{q}"][measure] for q in range(200)])
        np.testing.assert_allclose(values, expected, atol=1e-6, err_msg=measure)
    assert 0.0 < ours["ndcg_cut_10"].mean() < 1.0  # the random rankings are neither perfect nor empty


def test_auc_agrees_with_sklearn_including_ties():
    from sklearn import metrics as sklearn_metrics  # installed with evidently
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.random(300) < rng.uniform(0.05, 0.6)
        scores = np.round(rng.random(300), 1)  # few distinct values: many ties
        assert M.auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
