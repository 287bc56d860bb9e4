"""Baselines fitted on the same history and scored on the same candidates as the model.

Strong, cheap baselines make an honest bar: purchase logs are dominated by repeats, so "the user's own items" is
hard to beat, and co-purchase kNN / implicit matrix factorisation cover collaborative signal. Every baseline breaks
its own ties by recent popularity, so users without history still get a sensible list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from liveloop.evaluation.protocol import positive_events


@dataclass
class Interactions:
    """Positive history as sparse user x item matrices (counts, recency rank within the user)."""

    user_index: dict[str, int]
    item_index: dict[str, int]
    counts: sp.csr_matrix  # number of positive events per (user, item)
    recency: sp.csr_matrix  # dense rank of the last positive within the user's items, 1 = oldest
    recent_popularity: np.ndarray  # per item, positives inside the popularity window
    total_popularity: np.ndarray  # per item, all positives

    @classmethod
    def from_events(cls, events: pd.DataFrame, as_of: pd.Timestamp, popularity_days: float) -> "Interactions":
        pos = positive_events(events)[["user_id", "item_id", "ts"]].astype({"user_id": str, "item_id": str})
        users = sorted(pos["user_id"].unique())
        items = sorted(pos["item_id"].unique())
        user_index = {u: i for i, u in enumerate(users)}
        item_index = {it: i for i, it in enumerate(items)}
        pairs = pos.groupby(["user_id", "item_id"], sort=False).agg(count=("ts", "size"), last=("ts", "max")).reset_index()
        pairs["recency"] = pairs.groupby("user_id")["last"].rank(method="dense")
        rows = pairs["user_id"].map(user_index).to_numpy(np.int64)
        cols = pairs["item_id"].map(item_index).to_numpy(np.int64)
        shape = (len(users), len(items))
        counts = sp.csr_matrix((pairs["count"].to_numpy(np.float64), (rows, cols)), shape=shape)
        recency = sp.csr_matrix((pairs["recency"].to_numpy(np.float64), (rows, cols)), shape=shape)
        window_start = as_of - pd.Timedelta(days=popularity_days)
        recent = pos.loc[pos["ts"] >= window_start, "item_id"].map(item_index).to_numpy(np.int64)
        return cls(
            user_index=user_index,
            item_index=item_index,
            counts=counts,
            recency=recency,
            recent_popularity=np.bincount(recent, minlength=len(items)).astype(np.float64),
            total_popularity=np.bincount(cols, weights=pairs["count"].to_numpy(np.float64), minlength=len(items)),
        )

    def user_rows(self, user_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row index per user and a mask of users that have history."""
        idx = np.array([self.user_index.get(u, -1) for u in user_ids], dtype=np.int64)
        return np.maximum(idx, 0), idx >= 0

    def item_cols(self, item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Column index per candidate and a mask of candidates that have history (warm items)."""
        idx = np.array([self.item_index.get(i, -1) for i in item_ids], dtype=np.int64)
        return np.maximum(idx, 0), idx >= 0

    def user_item(self, matrix: sp.csr_matrix, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        """Dense [users, candidates] slice of a user x item matrix; zero for unknown users or items."""
        rows, known_users = self.user_rows(user_ids)
        cols, known_items = self.item_cols(item_ids)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            return np.zeros((len(user_ids), len(item_ids)))
        out = matrix[rows][:, cols].toarray()
        out[~known_users] = 0.0
        out[:, ~known_items] = 0.0
        return out

    def popularity(self, item_ids: list[str]) -> np.ndarray:
        """Recent popularity with all-time popularity as the tie-breaker, scaled into [0, 1)."""
        if len(self.total_popularity) == 0:
            return np.zeros(len(item_ids))
        per_item = self.recent_popularity + self.total_popularity / (self.total_popularity.max() + 1.0)
        cols, known = self.item_cols(item_ids)
        scores = np.where(known, per_item[cols], 0.0)
        return scores / (per_item.max() + 1.0)


class PopularityBaseline:
    """Most wanted items in the recent window (same list for everyone)."""

    name = "popularity"

    def __init__(self, data: Interactions):
        self.data = data

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        return np.tile(self.data.popularity(item_ids), (len(user_ids), 1))


class RepeatBaseline:
    """The user's own items first, ordered by purchase count or by recency, then recent popularity."""

    def __init__(self, data: Interactions, order: str):
        if order not in ("count", "recency"):
            raise ValueError(f"repeat baseline order must be 'count' or 'recency', got {order!r}")
        self.data, self.order = data, order
        self.name = f"repeat_{order}"

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        primary = self.data.user_item(getattr(self.data, "counts" if self.order == "count" else "recency"), user_ids, item_ids)
        # primary values are integers >= 1 for own items, so they dominate the popularity term in [0, 1)
        return np.where(primary > 0, 1.0 + primary, 0.0) + self.data.popularity(item_ids)[None, :]


class ItemKNNBaseline:
    """Co-purchase item kNN: cosine similarity of item columns, top-k neighbours kept per item."""

    name = "item_knn"

    def __init__(self, data: Interactions, neighbours: int, chunk: int = 2048):
        self.data = data
        binary = (data.counts > 0).astype(np.float64).tocsc()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
        normed = binary @ sp.diags(1.0 / np.maximum(norms, 1e-12))
        n_items = normed.shape[1]
        keep = min(neighbours, max(n_items - 1, 0))
        rows, cols, vals = [], [], []
        for start in range(0, n_items, chunk):
            stop = min(start + chunk, n_items)
            sims = (normed.T @ normed[:, start:stop]).toarray()  # [all items, chunk]
            sims[np.arange(start, stop), np.arange(stop - start)] = 0.0  # an item is not its own neighbour
            if keep == 0:
                continue
            top = np.argpartition(-sims, keep - 1, axis=0)[:keep]  # [keep, chunk]
            top_vals = np.take_along_axis(sims, top, axis=0)
            nz = top_vals > 0
            rows.append(top[nz])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[nz])
            vals.append(top_vals[nz])
        cat = (lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype))
        self.similarity = sp.csr_matrix(
            (cat(vals, np.float64), (cat(rows, np.int64), cat(cols, np.int64))), shape=(n_items, n_items)
        )
        self.user_binary = (data.counts > 0).astype(np.float64).tocsr()

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        rows, known_users = self.data.user_rows(user_ids)
        cols, known_items = self.data.item_cols(item_ids)
        knn = np.zeros((len(user_ids), len(item_ids)))
        if self.similarity.shape[0]:
            knn = (self.user_binary[rows] @ self.similarity).toarray()[:, cols]
            knn[~known_users] = 0.0
            knn[:, ~known_items] = 0.0
        return knn + 1e-6 * self.data.popularity(item_ids)[None, :]


class ALSBaseline:
    """ID-based implicit-feedback matrix factorisation: Hu, Koren & Volinsky ALS with confidence
    1 + alpha*log1p(count), each half-step solved by a few conjugate-gradient steps vectorised over all rows
    (Takacs et al. 2011), so a sweep costs a few sparse products instead of one dense solve per user."""

    name = "mf_als"
    cg_steps = 3

    def __init__(self, data: Interactions, factors: int, iterations: int, regularization: float, alpha: float, seed: int):
        self.data = data
        confidence = data.counts.copy().astype(np.float32)
        confidence.data = 1.0 + alpha * np.log1p(confidence.data)
        by_user, by_item = confidence.tocsr(), confidence.T.tocsr()
        rng = np.random.default_rng(seed)
        self.user_factors = rng.normal(0, 0.01, (by_user.shape[0], factors)).astype(np.float32)
        self.item_factors = rng.normal(0, 0.01, (by_user.shape[1], factors)).astype(np.float32)
        for _ in range(iterations):
            self.user_factors = self._solve(by_user, self.user_factors, self.item_factors, regularization)
            self.item_factors = self._solve(by_item, self.item_factors, self.user_factors, regularization)

    @classmethod
    def _solve(cls, confidence: sp.csr_matrix, start: np.ndarray, fixed: np.ndarray, regularization: float) -> np.ndarray:
        """Approximately solve (Y'Y + Y'(C_u - I)Y + reg I) x_u = Y'C_u p_u for every row u, warm-started."""
        gram = fixed.T @ fixed + regularization * np.eye(fixed.shape[1], dtype=fixed.dtype)
        rows = np.repeat(np.arange(confidence.shape[0]), np.diff(confidence.indptr))
        fixed_at_nonzeros, extra = fixed[confidence.indices], confidence.data - 1.0

        def apply(x: np.ndarray) -> np.ndarray:
            dots = np.einsum("nf,nf->n", fixed_at_nonzeros, x[rows]) * extra
            weighted = sp.csr_matrix((dots, confidence.indices, confidence.indptr), shape=confidence.shape)
            return x @ gram + weighted @ fixed

        x = start.copy()
        residual = confidence @ fixed - apply(x)
        direction = residual.copy()
        norm = np.einsum("uf,uf->u", residual, residual)
        for _ in range(cls.cg_steps):
            step_dir = apply(direction)
            denom = np.einsum("uf,uf->u", direction, step_dir)
            step = np.divide(norm, denom, out=np.zeros_like(norm), where=denom > 1e-20)
            x += step[:, None] * direction
            residual -= step[:, None] * step_dir
            new_norm = np.einsum("uf,uf->u", residual, residual)
            ratio = np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 1e-20)
            direction = residual + ratio[:, None] * direction
            norm = new_norm
        return x

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        rows, known_users = self.data.user_rows(user_ids)
        cols, known_items = self.data.item_cols(item_ids)
        mf = np.zeros((len(user_ids), len(item_ids)))
        if self.user_factors.shape[0] and self.item_factors.shape[0]:
            mf = self.user_factors[rows] @ self.item_factors[cols].T
            mf[~known_users] = 0.0
            mf[:, ~known_items] = 0.0
        return mf + 1e-6 * self.data.popularity(item_ids)[None, :]


def id_baselines(events: pd.DataFrame, as_of: pd.Timestamp, cfg, seed: int, popularity_days: float) -> list:
    """All ID-based baselines fitted on the positives before `as_of` (cfg: EvaluateConfig; popularity_days:
    model.popularity_days, the ranker's own popularity window, so the popularity baseline is read alike)."""
    data = Interactions.from_events(events.loc[events["ts"] < as_of], as_of, popularity_days)
    return [
        PopularityBaseline(data),
        RepeatBaseline(data, "count"),
        RepeatBaseline(data, "recency"),
        ItemKNNBaseline(data, cfg.knn_neighbours),
        ALSBaseline(data, cfg.mf_factors, cfg.mf_iterations, cfg.mf_regularization, cfg.mf_alpha, seed),
    ]
