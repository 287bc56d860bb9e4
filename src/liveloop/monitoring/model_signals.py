"""Signals that need the champion: its score distribution (prediction drift) and its ranking quality on the newly
labelled batch (performance drift). Texts go through the champion's own towers, the space it actually scores in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import DriftConfig, EvaluateConfig
from liveloop.data.batches import Tables, concat_batches
from liveloop.monitoring.frames import sample_list


@dataclass
class Side:
    """Sampled items and users of one side (reference or current), scored by the champion as it serves."""

    tables: Tables
    item_ids: list[str]
    user_ids: list[str]


def load_model(champion_dir: Path):
    from liveloop.model.recommender import Recommender

    return Recommender.load(champion_dir)


def side_texts(batches: list[Tables], cfg: DriftConfig, seed: int) -> Side:
    """Items and users of the batches, sampled (a user's state is taken at the end of the side)."""
    tables = {name: pd.concat([b[name] for b in batches], ignore_index=True) for name in batches[0]}
    tables["items"] = tables["items"].drop_duplicates("item_id", keep="last")
    n = cfg.embedding_sample
    items = sample_list(sorted(set(tables["items"]["item_id"].astype(str))), n, seed)
    users = sample_list(sorted(set(tables["events"]["user_id"].astype(str))), n, seed + 1)
    return Side(tables, items, users)


def score_summary(model, side: Side) -> pd.DataFrame:
    """Per sampled user: the champion's best and mean score over the sampled items of the same side."""
    from liveloop.model.history import Histories
    from liveloop.model.ranker import Popularity
    from liveloop.model.scoring import CatalogueScorer

    hist = Histories.from_events(side.tables["events"], side.tables["streams"])
    scorer = CatalogueScorer.from_items(model, side.tables["items"], Popularity.from_histories(hist), side.tables["streams"],
                                        item_ids=side.item_ids)
    t = int(hist.ts.max()) + 1 if len(hist.ts) else 0
    states = [hist.state_at(u, t, model.config.history_window) for u in side.user_ids]
    vecs = scorer.user_vectors(states)
    cand = np.arange(len(side.item_ids))
    scores = np.stack([scorer.scores(s, v, cand, None, t) for s, v in zip(states, vecs)])
    return pd.DataFrame({"top_score": scores.max(axis=1), "mean_score": scores.mean(axis=1)})


def ndcg_on(model, history: Tables, test: Tables, cfg: DriftConfig, k: int) -> float:
    """Mean NDCG@k of the model on `test` with `history` as context (the evaluation's next-window protocol)."""
    from liveloop.evaluation.evaluate import RecommenderScorer
    from liveloop.evaluation.metrics import ndcg
    from liveloop.evaluation.protocol import next_window

    split = next_window(history, test, max_users=cfg.eval_users, seed=cfg.seed)
    scores = RecommenderScorer("champion", model, split).score(split.user_ids, split.candidate_ids)
    position = {c: i for i, c in enumerate(split.candidate_ids)}
    ranks = []
    for row, targets in zip(scores, split.targets):
        order = np.empty(len(row), dtype=np.int64)
        order[np.argsort(-row, kind="stable")] = np.arange(1, len(row) + 1)
        found = [order[position[t]] for t in targets if t in position]
        if found:
            ranks.append(np.array(found))
    if not ranks:
        raise ValueError("no evaluated user has a target item among the candidates")
    return float(ndcg(ranks, k).mean())


def performance(model, reference_dirs: list[Path], current: Tables, cfg: DriftConfig, evaluate: EvaluateConfig) -> dict:
    """The champion's headline NDCG (evaluate.ndcg_metric, the gate's metric) on the new batch vs the same protocol
    on the last reference batch (the gate's own numbers come from a day's held-out tail, a different question).
    Empty with fewer than 2 reference batches: there is nothing to compare with."""
    from liveloop.data.batches import read_batch

    if len(reference_dirs) < 2:
        return {}
    key, k = evaluate.ndcg_metric, evaluate.ndcg_k
    current_value = ndcg_on(model, concat_batches(reference_dirs), current, cfg, k)
    baseline = ndcg_on(model, concat_batches(reference_dirs[:-1]), read_batch(reference_dirs[-1]), cfg, k)
    source = "on the last reference batch"
    drop = (baseline - current_value) / baseline if baseline > 0 else None
    return {key: {"current": current_value, "baseline": baseline, "baseline_source": source, "relative_drop": drop}}
