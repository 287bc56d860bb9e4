"""The inference API others code against: encode, score (with repeat bonus), ctr, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liveloop.config import ModelConfig
from liveloop.model import ModelError, Recommender, UserContext

ITEMS = [
    "Red ceramic coffee mug | kitchen | price 3-10",
    "White porcelain teapot | kitchen | price 10-30",
    "Blue denim jeans | fashion | price 30-100",
    "Wireless gaming mouse | electronics | price 10-30",
]


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return Recommender.from_config(ModelConfig(dim=32), device="cpu", seed=0)


def test_encodings_are_unit_vectors_in_caller_order(rec):
    vecs = rec.encode_items(ITEMS, batch_size=3)
    assert vecs.shape == (4, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    reversed_vecs = rec.encode_items(ITEMS[::-1], batch_size=2)
    np.testing.assert_allclose(reversed_vecs[::-1], vecs, atol=1e-5)
    assert rec.encode_users(["bought: Red ceramic coffee mug"]).shape == (1, 32)


def test_score_is_text_plus_popularity_plus_bonus_only_on_past_items(rec):
    items, users = rec.encode_items(ITEMS), rec.encode_users(["bought: Red ceramic coffee mug", "no history"])
    plain = rec.score(users, items)
    scale = rec.net.text_scale.item()
    np.testing.assert_allclose(plain, scale * users @ items.T / rec.config.temperature, rtol=1e-5, atol=1e-5)
    ids = ["mug", "pot", "jeans", "mouse"]
    contexts = [UserContext("x", {"mug": 3.0, "gone": 1.0}, {"mug": 2.0}), UserContext("y")]
    with_bonus = rec.score(users, items, contexts, ids)
    delta = with_bonus - plain
    assert delta[0, 0] > 0  # the untrained prior already favours a past purchase
    assert np.count_nonzero(np.abs(delta) > 1e-6) == 1
    rec.item_popularity = {"jeans": 99.0}
    try:
        with_popularity = rec.score(users, items, contexts, ids) - with_bonus
    finally:
        rec.item_popularity = {}
    np.testing.assert_allclose(with_popularity[:, 2], rec.net.popularity_weight.item() * np.log1p(99.0), rtol=1e-5)
    assert np.count_nonzero(np.abs(with_popularity) > 1e-6) == 2  # the popular item, for both users


def test_untrained_prior_ranks_own_items_by_recency_then_popularity(rec):
    """Before any training the score is already the repeat_recency baseline: own items (recent first), then popular."""
    items, users = rec.encode_items(ITEMS), rec.encode_users(["bought: Blue denim jeans"])
    ids = ["mug", "pot", "jeans", "mouse"]
    rec.item_popularity = {"pot": 500.0, "mouse": 20.0}
    try:
        scores = rec.score(users, items, [UserContext("x", {"jeans": 1.0, "mug": 1.0}, {"jeans": 200.0, "mug": 1.0})], ids)
    finally:
        rec.item_popularity = {}
    assert list(np.argsort(-scores[0])) == [0, 2, 1, 3]


def test_bought_mug_ranks_kitchen_items_above_unrelated(rec):
    items = rec.encode_items(ITEMS)
    user = rec.encode_users(["bought: Blue ceramic coffee mug; clicked: Glass teapot"])
    scores = rec.score(user, items)[0]
    assert min(scores[0], scores[1]) > max(scores[2], scores[3])


def test_ctr_is_a_probability_matrix(rec):
    items, users = rec.encode_items(ITEMS), rec.encode_users(["a", "b", "c"])
    p = rec.ctr(users, items)
    assert p.shape == (3, 4) and ((p > 0) & (p < 1)).all()
    np.testing.assert_allclose(rec.ctr(users[1:2], items), p[1:2], atol=1e-6)


def test_save_load_round_trip_is_exact_and_pickle_free(rec, tmp_path):
    rec.state = {"step": 5, "data_versions": {"2026-01-05": "abc"}}
    rec.item_popularity = {"mug": 3.0}
    try:
        rec.save(tmp_path / "m")
    finally:
        rec.item_popularity = {}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "encoder", "model.safetensors", "popularity.json", "state.json"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dim"] == 32
    loaded = Recommender.load(tmp_path / "m", device="cpu")
    assert loaded.state["step"] == 5
    assert loaded.item_popularity == {"mug": 3.0}
    users = ["bought: Red ceramic coffee mug"]
    np.testing.assert_array_equal(loaded.encode_items(ITEMS), rec.encode_items(ITEMS))
    np.testing.assert_array_equal(loaded.encode_users(users), rec.encode_users(users))


def test_bad_inputs_fail_with_clear_errors(rec, tmp_path):
    items = rec.encode_items(ITEMS[:2])
    with pytest.raises(ModelError, match=r"user_vecs \[u, 32\]"):
        rec.score(np.zeros((1, 5)), items)
    with pytest.raises(ModelError, match="one entry per user"):
        rec.score(items[:1], items, [], ["a", "b"])
    with pytest.raises(ModelError, match="item_ids need one entry per item"):
        rec.score(items[:1], items, None, ["a"])
    with pytest.raises(ModelError, match="list of strings"):
        rec.encode_items([None])
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        Recommender.load(tmp_path)
    with pytest.raises(ModelError, match="cannot load encoder"):
        Recommender.from_config(ModelConfig(encoder=str(tmp_path / "nope")))
    with pytest.raises(ModelError, match="no CUDA GPU|unknown device"):
        Recommender.from_config(ModelConfig(), device="cuda:7" if not _has_cuda() else "potato")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
