"""Signals that need the champion: its score distribution (prediction drift) and its ranking quality on the newly
labelled batch (performance drift). Texts go through the champion's own towers, the space it actually scores in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import DriftConfig
from liveloop.data.batches import Tables, concat_batches
from liveloop.monitoring.frames import sample_list


@dataclass
class SideTexts:
    """Sampled texts of one side (reference or current), with the user contexts needed to score them."""

    item_ids: list[str]
    item_texts: list[str]
    user_contexts: list  # model.text.UserContext, one per sampled user


def load_model(champion_dir: Path):
    from liveloop.model.recommender import Recommender

    return Recommender.load(champion_dir)


def side_texts(batches: list[Tables], cfg: DriftConfig, seed: int) -> SideTexts:
    """Items and user behaviour of each batch on its own (a user's context never spans batches), sampled."""
    from liveloop.model.text import item_texts, user_contexts

    items: list[tuple[str, str]] = []
    users: list = []
    for tables in batches:
        items += list(item_texts(tables["items"], tables["streams"]).items())
        users += list(user_contexts(tables["events"], tables["items"]).values())
    n = cfg.embedding_sample
    items = sample_list(items, n, seed)
    return SideTexts(
        item_ids=[i for i, _ in items],
        item_texts=[t for _, t in items],
        user_contexts=sample_list(users, n, seed + 1),
    )


def score_summary(model, side: SideTexts) -> pd.DataFrame:
    """Per sampled user: the champion's best and mean score over the sampled items of the same side."""
    user_vecs = model.encode_users([c.text for c in side.user_contexts])
    scores = model.score(user_vecs, model.encode_items(side.item_texts), side.user_contexts, side.item_ids)
    return pd.DataFrame({"top_score": scores.max(axis=1), "mean_score": scores.mean(axis=1)})


def ndcg_on(model, history: Tables, test: Tables, cfg: DriftConfig) -> float:
    """Mean NDCG@k of the model on `test` with `history` as context (the evaluation helper's next-window protocol)."""
    from liveloop.evaluation.metrics import ndcg
    from liveloop.evaluation.protocol import next_window
    from liveloop.model.text import UserContext, item_texts, user_contexts

    split = next_window(history, test, max_users=cfg.eval_users, seed=cfg.seed)
    contexts = user_contexts(split.history["events"], split.history["items"], as_of=split.as_of,
                             max_events=model.config.history_events)
    user_ctx = [contexts.get(u, UserContext(text="no history")) for u in split.user_ids]
    texts = item_texts(split.history["items"], split.history["streams"])
    candidates = [c for c in split.candidate_ids if c in texts]
    scores = model.score(
        model.encode_users([c.text for c in user_ctx]),
        model.encode_items([texts[c] for c in candidates]),
        user_ctx,
        candidates,
    )
    position = {c: i for i, c in enumerate(candidates)}
    ranks = []
    for row, targets in zip(scores, split.targets):
        order = np.empty(len(row), dtype=np.int64)
        order[np.argsort(-row, kind="stable")] = np.arange(1, len(row) + 1)
        found = [order[position[t]] for t in targets if t in position]
        if found:
            ranks.append(np.array(found))
    if not ranks:
        raise ValueError("no evaluated user has a target item among the candidates")
    return float(ndcg(ranks, cfg.ndcg_k).mean())


def performance(model, reference_dirs: list[Path], current: Tables, cfg: DriftConfig) -> dict:
    """The champion's NDCG@k on the new batch vs its recorded evaluation (state.json) or, failing that, vs the same
    protocol on the last reference batch. Empty when there is no baseline to compare with."""
    key = f"ndcg@{cfg.ndcg_k}"
    current_value = ndcg_on(model, concat_batches(reference_dirs), current, cfg)
    recorded = model.state.get("metrics") or {}
    if isinstance(recorded.get(cfg.performance_metric), (int, float)):
        baseline, source = float(recorded[cfg.performance_metric]), "recorded in the champion's state.json"
    elif len(reference_dirs) >= 2:
        from liveloop.data.batches import read_batch

        baseline = ndcg_on(model, concat_batches(reference_dirs[:-1]), read_batch(reference_dirs[-1]), cfg)
        source = "on the last reference batch"
    else:
        return {}
    drop = (baseline - current_value) / baseline if baseline > 0 else None
    return {key: {"current": current_value, "baseline": baseline, "baseline_source": source, "relative_drop": drop}}
