"""The hand-written item-kNN and ALS baselines (liveloop.evaluation.baselines) against the `implicit` library.

item-kNN: the same cosine similarities and the same scores; with a neighbour cap, the kept neighbours differ only
where candidates tie with the k-th similarity (each library breaks those ties its own way).
ALS: both minimise the Hu-Koren-Volinsky objective with confidence 1 + alpha*log1p(count) by 3 conjugate-gradient
steps per half-sweep; from different random starts they reach objectives within 1% of each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from liveloop.evaluation.baselines import ALSBaseline, Interactions, ItemKNNBaseline

N_USERS, N_ITEMS = 300, 120
pytestmark = pytest.mark.filterwarnings("ignore:Method expects CSR input")  # implicit converts internally


@pytest.fixture(scope="module")
def data() -> Interactions:
    """Purchase counts planted from a rank-4 taste model, so there is collaborative signal to find."""
    rng = np.random.default_rng(0)
    taste = rng.normal(size=(N_USERS, 4)) @ rng.normal(size=(N_ITEMS, 4)).T
    bought = rng.random((N_USERS, N_ITEMS)) < 1.0 / (1.0 + np.exp(3.0 - taste))
    counts = sp.csr_matrix(bought * rng.integers(1, 4, (N_USERS, N_ITEMS)), dtype=np.float64)
    return Interactions(user_index={f"u{i}": i for i in range(N_USERS)}, item_index={f"i{j}": j for j in range(N_ITEMS)},
                        counts=counts, recency=counts, recent_popularity=np.zeros(N_ITEMS),
                        total_popularity=np.ones(N_ITEMS))


def _implicit_similarity(data: Interactions, neighbours: int) -> np.ndarray:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=neighbours + 1)  # implicit counts the item itself among its K
    model.fit((data.counts > 0).astype(np.float64).tocsr(), show_progress=False)
    sim = model.similarity.toarray()
    np.testing.assert_allclose(np.diag(sim), 1.0)
    np.fill_diagonal(sim, 0.0)
    return sim.T  # implicit keeps each row's (source item's) neighbours; ours each column's (candidate's)


def test_item_knn_without_a_cap_equals_implicit_cosine(data):
    ours = ItemKNNBaseline(data, neighbours=N_ITEMS)
    reference = _implicit_similarity(data, N_ITEMS)
    np.testing.assert_allclose(ours.similarity.toarray(), reference, atol=1e-12)
    users, items = list(data.user_index), list(data.item_index)
    scores = ours.score(users, items) - 1e-6 * data.popularity(items)[None, :]  # drop the popularity tie-break
    np.testing.assert_allclose(scores, (data.counts > 0).astype(np.float64).toarray() @ reference, atol=1e-9)
    assert (reference > 0).sum() > N_ITEMS * 10  # co-purchases exist: the comparison is not of empty matrices


def test_item_knn_neighbour_cap_differs_from_implicit_only_at_ties(data):
    k = 20
    ours = ItemKNNBaseline(data, neighbours=k).similarity.toarray()
    reference = _implicit_similarity(data, k)
    assert (ours > 0).sum() == (reference > 0).sum() == k * N_ITEMS
    both = (ours > 0) & (reference > 0)
    np.testing.assert_allclose(ours[both], reference[both], atol=1e-12)
    kth = np.sort(_implicit_similarity(data, N_ITEMS), axis=0)[-k]  # k-th largest similarity per candidate
    rows, cols = np.nonzero((ours > 0) != (reference > 0))
    assert np.allclose(ours[rows, cols] + reference[rows, cols], kth[cols], atol=1e-12), \
        "a kept neighbour differs from implicit's other than by a tie with the k-th similarity"
    assert len(rows) < 0.02 * k * N_ITEMS


def _objective(data: Interactions, users: np.ndarray, items: np.ndarray, alpha: float, reg: float) -> float:
    counts = data.counts.toarray()
    confidence = np.where(counts > 0, 1.0 + alpha * np.log1p(counts), 1.0)
    residual = (counts > 0) - users.astype(np.float64) @ items.astype(np.float64).T
    return float((confidence * residual**2).sum() + reg * ((users**2).sum() + (items**2).sum()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_als_reaches_implicit_objective_within_one_percent(data):
    from implicit.cpu.als import AlternatingLeastSquares

    factors, iterations, reg, alpha = 8, 15, 0.1, 5.0
    ours = ALSBaseline(data, factors, iterations, reg, alpha, seed=0)
    confidence = data.counts.copy()
    confidence.data = 1.0 + alpha * np.log1p(confidence.data)
    # implicit's confidence is alpha * value: alpha=1 on the same confidence matrix gives the same objective
    reference = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=1.0, iterations=iterations,
                                        use_cg=True, random_state=0, num_threads=1)
    reference.fit(confidence.astype(np.float32).tocsr(), show_progress=False)
    ours_loss = _objective(data, ours.user_factors, ours.item_factors, alpha, reg)
    ref_loss = _objective(data, reference.user_factors, reference.item_factors, alpha, reg)
    untrained = _objective(data, np.zeros((N_USERS, factors)), np.zeros((N_ITEMS, factors)), alpha, reg)
    assert ref_loss < 0.8 * untrained, "implicit did not fit: the comparison would say nothing"
    assert ours_loss == pytest.approx(ref_loss, rel=0.01)
