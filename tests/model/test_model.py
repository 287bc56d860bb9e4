"""The inference API and behavioural tests of a fresh model (no training): the tower starts at the pretrained text
geometry, so category taste, text match of new items and comment intent already come out right."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from liveloop.config import ModelConfig, SimulateConfig
from liveloop.data.simulator import simulate
from liveloop.model import ModelError, Recommender
from liveloop.model.history import Histories
from liveloop.model.ranker import Popularity
from liveloop.model.scoring import CatalogueScorer
from liveloop.model.text import NO_HISTORY
from liveloop.model.vectors import EncoderError, TextEncoder

CFG = ModelConfig(history_window=10, seq_dim=16)
T0 = pd.Timestamp("2026-01-05 10:00")
CATALOGUE = [
    ("k1", "Red ceramic coffee mug", "kitchen"), ("k2", "White porcelain teapot", "kitchen"),
    ("k3", "Steel frying pan", "kitchen"), ("k4", "Glass salad bowl", "kitchen"),
    ("f1", "Blue denim jeans", "fashion"), ("f2", "Wool winter scarf", "fashion"),
    ("f3", "Leather ankle boots", "fashion"), ("e1", "Wireless gaming mouse", "electronics"),
    ("e2", "USB headset with microphone", "electronics"), ("e3", "Bluetooth speaker", "electronics"),
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    return TextEncoder(cache_dir=tmp_path_factory.getbasetemp() / "liveloop-state" / "vectors")


@pytest.fixture(scope="module")
def rec(encoder) -> Recommender:
    return Recommender.from_config(CFG, device="cpu", seed=0, encoder=encoder)


def items_frame(rows=CATALOGUE) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [r[0] for r in rows], "title": [r[1] for r in rows], "description": "",
                         "category": [r[2] for r in rows], "brand": "", "price": 20.0,
                         "first_seen": pd.Timestamp("2025-12-01")})


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (user, minutes after T0, event_type, item_id, text)."""
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(len(rows))], "ts": [T0 + pd.Timedelta(minutes=m) for _, m, *_ in rows],
        "user_id": [r[0] for r in rows], "item_id": [r[3] for r in rows], "stream_id": "s1",
        "event_type": [r[2] for r in rows], "text": [r[4] for r in rows],
        "quantity": [1.0 if r[2] == "purchase" else np.nan for r in rows],
        "price": [20.0 if r[2] == "purchase" else np.nan for r in rows],
    })


def retrieval_scores(rec, items: pd.DataFrame, events: pd.DataFrame, user: str) -> pd.Series:
    """Scores of every catalogue item for `user` one hour after T0, ranker off (the retrieval order)."""
    hist = Histories.from_events(events)
    scorer = CatalogueScorer.from_items(rec, items, Popularity.from_histories(hist))
    t = (T0 + pd.Timedelta(hours=1)).value
    state = hist.state_at(user, t, rec.config.history_window)
    assert not state.empty
    vec = scorer.user_vectors([state])[0]
    n = len(scorer.table.item_ids)
    scores = scorer.scores(state, vec, np.arange(n), np.full(n, "", dtype=object), t, use_ranker=False)
    return pd.Series(scores, index=scorer.table.item_ids)


def test_item_vectors_are_unit_and_in_caller_order(rec):
    texts = [f"{title} | {cat}" for _, title, cat in CATALOGUE]
    vecs = rec.encode_items(texts)
    assert vecs.shape == (len(texts), rec.encoder.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rec.encode_items(texts[::-1])[::-1], vecs, atol=1e-5)


def test_fresh_tower_is_the_pretrained_geometry(rec, encoder):
    """At step 0 the residual is zero and the adapters are the identity: one purchase -> that item's text vector."""
    items = items_frame()
    events = events_frame([("u", 0, "purchase", "k1", None)])
    hist = Histories.from_events(events)
    scorer = CatalogueScorer.from_items(rec, items, Popularity.from_histories(hist))
    state = hist.state_at("u", (T0 + pd.Timedelta(minutes=5)).value, CFG.history_window)
    vec = scorer.user_vectors([state])[0]
    np.testing.assert_allclose(vec, scorer.table.vecs[scorer.table.row_of["k1"]], atol=1e-5)
    # a user without events reads as the frozen encoder reads them (its "no history" text), not as all ties
    empty = hist.state_at("nobody", T0.value, CFG.history_window)
    no_history = encoder.encode([NO_HISTORY])[0]
    np.testing.assert_allclose(scorer.user_vectors([empty])[0], no_history / np.linalg.norm(no_history), atol=1e-5)
    np.testing.assert_allclose(rec.prior_vector(empty, scorer.item_base), scorer.user_vectors([empty])[0], atol=1e-6)


def test_one_category_buyer_gets_that_category_on_top(rec):
    items = items_frame()
    events = events_frame([("u", 0, "purchase", "k1", None), ("u", 5, "click", "k2", None),
                           ("u", 9, "purchase", "k3", None)])
    scores = retrieval_scores(rec, items, events, "u")
    category = dict(zip(items.item_id, items.category))
    top = scores.sort_values(ascending=False).index[:4]
    assert [category[i] for i in top] == ["kitchen"] * 4, scores.sort_values(ascending=False)


def test_new_item_matching_the_history_ranks_above_an_unrelated_one(rec):
    rows = CATALOGUE + [("n1", "Stoneware espresso coffee cup", "kitchen"), ("n2", "Mechanical gaming keyboard", "electronics")]
    items = items_frame(rows)
    events = events_frame([("u", 0, "purchase", "k1", None), ("u", 5, "click", "k2", None)])
    scores = retrieval_scores(rec, items, events, "u")
    assert scores["n1"] > scores["n2"]
    assert scores["n1"] > scores[["f1", "f2", "f3", "e1", "e2", "e3"]].max()


def test_comment_naming_a_product_brings_it_into_the_top_5(rec, tmp_path):
    """A new visitor whose only event is a comment asking for a product noun gets such an item in the top 5."""
    cfg = SimulateConfig(days=1, n_users=30, n_items=60, n_hosts=3, rooms_per_day=2, items_per_room=10)
    day = simulate(cfg, 7, tmp_path / "accepted", tmp_path / "truth")[0]
    items = pd.read_parquet(day / "items.parquet")
    nouns = items["description"].str.split(" in ").str[0].str.split(" by ").str[0].str.lower()
    counts = nouns.value_counts()
    checked = 0
    for noun in [n for n in counts.index if counts[n] <= 3][:3]:  # rare nouns: the comment, not luck, finds them
        events = events_frame([("visitor", 0, "comment", None, f"how much is the {noun} today?")])
        scores = retrieval_scores(rec, items, events, "visitor")
        titles = items.set_index(items.item_id.astype(str))["title"].str.lower()
        top5 = scores.sort_values(ascending=False).index[:5]
        assert any(noun in titles[i] for i in top5), (noun, titles[top5].tolist())
        checked += 1
    assert checked >= 1


def test_save_load_round_trip_is_exact_and_pickle_free(rec, encoder, tmp_path):
    rec.state = {"step": 5, "data_versions": {"2026-01-05": "abc"}}
    rec.stats = {"repeat_share": {"k1": 0.5}}
    try:
        rec.save(tmp_path / "m")
    finally:
        rec.state, rec.stats = {}, {}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors", "state.json", "stats.json"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["seq_dim"] == 16
    loaded = Recommender.load(tmp_path / "m", device="cpu", encoder=encoder)
    assert loaded.state["step"] == 5 and loaded.stats == {"repeat_share": {"k1": 0.5}} and loaded.ranker is None
    for a, b in zip(rec.net.state_dict().values(), loaded.net.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_inputs_fail_with_clear_errors(rec, encoder, tmp_path):
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        Recommender.load(tmp_path, encoder=encoder)
    with pytest.raises(EncoderError, match="cannot load encoder"):
        TextEncoder(str(tmp_path / "nope"))
    with pytest.raises(EncoderError, match="strings"):
        encoder.encode([None])
    with pytest.raises(ModelError, match="no CUDA GPU|unknown device"):
        Recommender.from_config(CFG, device="cuda:7" if not _has_cuda() else "potato", encoder=encoder)
    rec.save(tmp_path / "m")
    state = json.loads((tmp_path / "m" / "state.json").read_text())
    (tmp_path / "m" / "state.json").write_text(json.dumps({**state, "encoder_fingerprint": "0" * 16}))
    with pytest.raises(ModelError, match="fingerprint"):
        Recommender.load(tmp_path / "m", device="cpu", encoder=encoder)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_popularity_counts_match_a_plain_count_and_follow_added_positives():
    """Counts in [t - window, t) per catalogue row, items outside the catalogue ignored; the per-catalogue row map
    is cached, so an add() and a different catalogue must both be seen."""
    rng = np.random.default_rng(0)
    items = rng.choice(["a", "b", "c", "gone"], 200)
    ts = T0.value + rng.integers(0, 5 * 86_400, 200) * 10**9
    pop = Popularity(items, ts)
    row_of = {"c": 0, "a": 1, "b": 2}

    def plain(t, days, catalogue, items=items, ts=ts):
        inside = (ts >= t - int(days * 86_400 * 10**9)) & (ts < t)
        return np.array([float(((items == i) & inside).sum()) for i in catalogue])

    t = T0.value + 3 * 86_400 * 10**9
    assert np.array_equal(pop.counts(t, 1.0, row_of), plain(t, 1.0, row_of))
    assert np.array_equal(pop.counts(t, 30.0, row_of), plain(t, 30.0, row_of))
    pop.add(["b", "b"], [t - 1, t - 2])
    assert pop.counts(t, 1.0, row_of)[2] == plain(t, 1.0, ["b"])[0] + 2
    other = {"gone": 0}
    assert pop.counts(t, 30.0, other)[0] == plain(t, 30.0, ["gone"])[0]


def test_recent_category_share_counts_only_the_last_days_takes(rec):
    """A user who bought kitchen things last week and clicks fashion today: the all-time category share says kitchen,
    the recent one says fashion (what a taste shift shows first)."""
    from liveloop.model.ranker import FEATURES

    items = items_frame()
    events = events_frame([("u", 0, "purchase", "k1", None), ("u", 1, "purchase", "k2", None),
                           ("u", 2, "purchase", "k3", None), ("u", 7 * 24 * 60, "click", "f1", None),
                           ("u", 7 * 24 * 60 + 5, "comment", None, "nice colour")])
    hist = Histories.from_events(events)
    scorer = CatalogueScorer.from_items(rec, items, Popularity.from_histories(hist))
    t = (T0 + pd.Timedelta(days=7, hours=1)).value
    state = hist.state_at("u", t, rec.config.history_window)
    rows = np.array([scorer.table.row_of[i] for i in ("k4", "f2", "e1")])
    x = scorer.features(state, scorer.user_vectors([state])[0], rows, None, t)
    recent, overall = x[:, FEATURES.index("recent_category_share")], x[:, FEATURES.index("category_share")]
    assert recent.tolist() == [0.0, 1.0, 0.0] and overall[0] == 0.75
    early = hist.state_at("u", (T0 + pd.Timedelta(days=3)).value, rec.config.history_window)
    cold = scorer.features(early, scorer.user_vectors([early])[0], rows, None,
                           (T0 + pd.Timedelta(days=3)).value)
    assert np.isnan(cold[:, FEATURES.index("recent_category_share")]).all()  # no take in the last day: unknown


def test_recency_weights_halve_per_half_life_and_are_off_by_default():
    from liveloop.training.ranking import recency_weights

    days = np.array(["2026-01-01", "2026-01-02", "2026-01-03"], dtype="datetime64[D]").astype(object)
    assert recency_weights(days, np.array([2, 1, 1]), None) is None
    assert recency_weights(days, np.array([2, 1, 1]), 1.0).tolist() == [0.25, 0.25, 0.5, 1.0]


def test_a_ranker_trained_before_a_feature_was_added_still_scores_on_the_features_it_knows():
    """An upgrade that adds a feature keeps an older champion serving (each booster reads its columns by name); a
    model naming a feature this code does not compute fails clearly."""
    import lightgbm as lgb

    from liveloop.model.ranker import FEATURES, Ranker
    from liveloop.model.recommender import ModelError

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURES)))
    y = (x[:, 0] + x[:, -1] > 0).astype(float)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5}
    old = lgb.train(params, lgb.Dataset(x[:, :-1], y, feature_name=list(FEATURES[:-1])), num_boost_round=5)
    new = lgb.train(params, lgb.Dataset(x, y, feature_name=list(FEATURES)), num_boost_round=5)
    ranker = Ranker.from_json({"rank_model": old.model_to_string(), "ctr_model": new.model_to_string()})
    assert "features" not in ranker.to_json()  # each model's names are in its own string
    assert np.allclose(ranker.rank_scores(x), old.predict(x[:, :-1]))
    assert np.allclose(ranker.ctr(x), new.predict(x))
    renamed = old.model_to_string().replace(FEATURES[1], "a_retired_feature")
    with pytest.raises(ModelError, match="a_retired_feature"):
        Ranker.from_json({"rank_model": renamed})
