"""Scoring users against candidates with the whole model: user tower -> retrieval -> ranker. One path for the
ranker's training, the evaluation and the service, so what is trained is what is measured and served.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from liveloop.model.history import UserState
from liveloop.model.ranker import ItemTable, Popularity, comment_texts, pair_features
from liveloop.model.recommender import Recommender
from liveloop.model.text import item_texts

POPULARITY_DAY = 1.0  # "popular now": positives in the last day


def generate(retrieval: np.ndarray, own: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the candidates the ranker orders: every own item, then the best by retrieval up to `limit`.

    Training builds its groups with this too, so the ranker learns on the candidate mix it is used on (adding the
    most popular items as a second source lost on an Online Retail validation cut: docs/benchmarks.md)."""
    order = np.argsort(-retrieval, kind="stable")
    own_pos = np.flatnonzero(own)
    rest = order[~own[order]][: max(0, limit - len(own_pos))]
    return np.sort(np.concatenate([own_pos, rest]).astype(np.int64))


class CatalogueScorer:
    """A recommender bound to a catalogue (vectors computed once) and a popularity history."""

    def __init__(self, rec: Recommender, table: ItemTable, popularity: Popularity):
        self.rec, self.table, self.popularity = rec, table, popularity
        self._pop_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_items(cls, rec: Recommender, items: pd.DataFrame, popularity: Popularity, streams: pd.DataFrame | None = None,
                   repeat: dict[str, float] | None = None, item_ids: list[str] | None = None) -> "CatalogueScorer":
        """Embed the catalogue's texts (cached; with the title of the latest room showing each item, as the service
        does) and build its item table."""
        item_ids = list(item_ids) if item_ids is not None else sorted(set(items["item_id"].astype(str)))
        texts = item_texts(items.loc[items["item_id"].astype(str).isin(set(item_ids))], streams)
        base = rec.base_vectors([texts.get(i, "unknown item") for i in item_ids])
        repeat = repeat if repeat is not None else rec.stats.get("repeat_share", {})
        return cls(rec, ItemTable.build(items, item_ids, base, rec.item_vectors(base), repeat), popularity)

    def item_base(self, item_ids: list[str]) -> np.ndarray:
        out = np.zeros((len(item_ids), self.table.base.shape[1]), dtype=np.float32)
        rows = [(k, self.table.row_of.get(i)) for k, i in enumerate(item_ids)]
        known = [(k, j) for k, j in rows if j is not None]
        if known:
            out[[k for k, _ in known]] = self.table.base[[j for _, j in known]]
        return out

    def user_vectors(self, states: list[UserState]) -> np.ndarray:
        return self.rec.user_vectors(states, self.item_base)

    def popularity_at(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        key = (t_ns, self.popularity.version)
        if key not in self._pop_cache:
            row_of = self.table.row_of
            if len(self._pop_cache) > 64:
                self._pop_cache.clear()
            self._pop_cache[key] = (self.popularity.counts(t_ns, self.rec.config.popularity_days, row_of),
                                    self.popularity.counts(t_ns, POPULARITY_DAY, row_of))
        return self._pop_cache[key]

    def generated(self, state: UserState, retrieval: np.ndarray, cand: np.ndarray, t_ns: int) -> np.ndarray:
        """Positions in `cand` the ranker orders (all of them up to model.rank_candidates, else `generate`'s)."""
        limit = self.rec.config.rank_candidates
        if len(cand) <= limit:
            return np.arange(len(cand))
        own = np.isin(cand, [self.table.row_of[i] for i in state.item_counts if i in self.table.row_of])
        return generate(retrieval, own, limit)

    def features(self, state: UserState, user_vec: np.ndarray, cand: np.ndarray, live_host, t_ns: int) -> np.ndarray:
        pop_window, pop_day = self.popularity_at(t_ns)
        comments = self.rec.base_vectors(comment_texts(state)) if state.comments else None
        prior = self.rec.prior_vector(state, self.item_base)
        return pair_features(state, user_vec, cand, self.table, pop_window, pop_day, live_host, comments, t_ns, prior)

    def scores(self, state: UserState, user_vec: np.ndarray, cand: np.ndarray, live_host, t_ns: int,
               use_ranker: bool = True) -> np.ndarray:
        """Final scores of candidate rows: the ranker's when the model has one, else the retrieval score."""
        ranker = self.rec.ranker
        retrieval = self.table.vecs[cand] @ np.asarray(user_vec, np.float32) / self.rec.config.temperature
        if not (use_ranker and ranker is not None and ranker.ranks):
            return retrieval
        if state.positives == 0 and (state.comments or ranker.info.get("cold_order", "retrieval") == "retrieval"):
            # no positive yet: a comment is all the tower reads (the ranker's popularity features swamped it: comment
            # intent 0.34 vs 0.98 top-5 hits), and without one validation decides (cold_order) whether the ranker helps
            return retrieval
        if len(cand) <= self.rec.config.rank_candidates:
            return ranker.rank_scores(self.features(state, user_vec, cand, live_host, t_ns))
        # a big catalogue: rank the generated candidates, the rest follow in retrieval order below all of them
        picked = self.generated(state, retrieval, cand, t_ns)
        hosts = None if live_host is None else np.asarray(live_host, dtype=object)[picked]
        ranked = ranker.rank_scores(self.features(state, user_vec, cand[picked], hosts, t_ns))
        out = retrieval - retrieval.max() + (ranked.min() if len(ranked) else 0.0) - 1.0
        out[picked] = ranked
        return out

    def ctr(self, state: UserState, user_vec: np.ndarray, cand: np.ndarray, live_host, t_ns: int) -> np.ndarray:
        """Click/take probabilities from the CTR model; a logistic of the retrieval score without one."""
        ranker = self.rec.ranker
        if ranker is not None and ranker.has_ctr:
            return ranker.ctr(self.features(state, user_vec, cand, live_host, t_ns))
        return 1.0 / (1.0 + np.exp(-(self.table.vecs[cand] @ np.asarray(user_vec, np.float32))))
