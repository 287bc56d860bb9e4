"""Signals that need the model: text embeddings of items, users and comments, the champion's score distribution, and
its ranking quality on the newly labelled batch.

Texts go through the champion's own towers (or a fresh model from `ModelConfig` before the first champion), so the
embedding drift is measured in the space the recommender actually uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import DriftConfig, ModelConfig
from liveloop.data.batches import Tables, concat_batches
from liveloop.monitoring.frames import comment_texts, sample_list


@dataclass
class SideTexts:
    """Sampled texts of one side (reference or current), with the user contexts needed to score them."""

    item_ids: list[str]
    item_texts: list[str]
    user_contexts: list  # model.text.UserContext, one per sampled user
    comments: list[str]


def load_model(champion_dir: Path | None, model_cfg: ModelConfig):
    from liveloop.model.recommender import Recommender

    if champion_dir is None:
        return Recommender.from_config(model_cfg, seed=0)
    return Recommender.load(champion_dir)


def side_texts(batches: list[Tables], cfg: DriftConfig, seed: int) -> SideTexts:
    """Items, user behaviour and comments of each batch on its own (a user's context never spans batches), sampled."""
    from liveloop.model.text import item_texts, user_contexts

    items: list[tuple[str, str]] = []
    users: list = []
    comments: list[str] = []
    for tables in batches:
        items += list(item_texts(tables["items"], tables["streams"]).items())
        users += list(user_contexts(tables["events"], tables["items"]).values())
        comments += comment_texts(tables["events"])
    n = cfg.embedding_sample
    items = sample_list(items, n, seed)
    return SideTexts(
        item_ids=[i for i, _ in items],
        item_texts=[t for _, t in items],
        user_contexts=sample_list(users, n, seed + 1),
        comments=sample_list(comments, n, seed + 2),
    )


def embed(model, side: SideTexts) -> dict[str, np.ndarray]:
    """Vectors per text kind; comments go through the user tower in the same "said: ..." form as user contexts."""
    out = {"items": model.encode_items(side.item_texts), "users": model.encode_users([c.text for c in side.user_contexts])}
    out["comments"] = model.encode_users([f"said: {c}" for c in side.comments]) if side.comments else np.zeros((0, 1))
    return out


def score_summary(model, side: SideTexts, vecs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per sampled user: the champion's best and mean score over the sampled items of the same side."""
    scores = model.score(vecs["users"], vecs["items"], side.user_contexts, side.item_ids)
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
