"""Ranking and classification metrics from target ranks.

Every ranking metric is computed from the 1-based ranks of each user's target items inside that user's ranked
candidate list, so one ranking pass feeds all metrics and every slice (a slice just keeps a subset of the targets).
"""

from __future__ import annotations

import numpy as np


def _check_ranks(ranks: list[np.ndarray]) -> None:
    for user_ranks in ranks:
        if len(user_ranks) == 0:
            raise ValueError("every user needs at least one target rank; drop users without targets first")
        if np.min(user_ranks) < 1:
            raise ValueError(f"ranks are 1-based, got {np.min(user_ranks)}")


def hit_rate(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """Per user: 1 if any target is in the top k."""
    _check_ranks(ranks)
    return np.array([float(np.min(r) <= k) for r in ranks])


def recall(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """Per user: share of the user's targets found in the top k."""
    _check_ranks(ranks)
    return np.array([float(np.mean(np.asarray(r) <= k)) for r in ranks])


def ndcg(ranks: list[np.ndarray], k: int) -> np.ndarray:
    """Per user: binary-relevance NDCG@k (DCG of the targets in the top k over the best possible DCG)."""
    _check_ranks(ranks)
    out = np.empty(len(ranks))
    for i, r in enumerate(ranks):
        r = np.asarray(r, dtype=float)
        dcg = np.sum(1.0 / np.log2(r[r <= k] + 1.0))
        ideal = np.sum(1.0 / np.log2(np.arange(1, min(len(r), k) + 1) + 1.0))
        out[i] = dcg / ideal
    return out


def reciprocal_rank(ranks: list[np.ndarray]) -> np.ndarray:
    """Per user: 1 / rank of the best-ranked target (no cut-off); the mean is MRR."""
    _check_ranks(ranks)
    return np.array([1.0 / float(np.min(r)) for r in ranks])


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (Mann-Whitney; ties count one half). None when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # average rank within each group of tied scores
    ranks = np.empty(len(scores))
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        ranks[order[start : start + count]] = start + (count + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def coverage(top_items: np.ndarray, n_candidates: int) -> float:
    """Share of the candidate catalogue that appears in at least one user's top list."""
    if n_candidates <= 0:
        raise ValueError("coverage needs at least one candidate item")
    return float(len(np.unique(top_items)) / n_candidates)


def paired_bootstrap_ratio(
    model: np.ndarray, baseline: np.ndarray, samples: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of mean(model) / mean(baseline) over users resampled with replacement (paired)."""
    model, baseline = np.asarray(model, dtype=float), np.asarray(baseline, dtype=float)
    if model.shape != baseline.shape or model.ndim != 1 or len(model) == 0:
        raise ValueError("paired bootstrap needs two equal-length, non-empty per-user arrays")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(model), size=(samples, len(model)))
    base_means = baseline[idx].mean(axis=1)
    ratios = model[idx].mean(axis=1) / np.where(base_means > 0, base_means, np.nan)
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)
