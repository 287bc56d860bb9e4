"""One evaluation run: every scorer (the model, the baselines, the simulator's oracle) ranks the same candidates for
the same users, and the metrics, slices, CTR AUC and the model-vs-best-baseline bootstrap come out of one pass.

Ties are broken by one seeded random order of the candidates shared by every scorer, so a scorer that gives many
items the same score gets the expected rank of a random tie-break, not a lucky or unlucky one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.data.batches import batch_day, concat_batches, read_batch
from liveloop.data.schema import TABLES
from liveloop.evaluation import metrics as M
from liveloop.evaluation.baselines import id_baselines
from liveloop.evaluation.protocol import SLICES, EvalSplit, next_window

log = logging.getLogger(__name__)

MODEL = "model"  # name of the evaluated (fine-tuned) model in every result
FROZEN = "frozen_encoder"  # the pretrained encoder before any fine-tuning
ORACLE = "oracle"  # the simulator's hidden preference (an upper reference, not a baseline)
NOT_BASELINES = (MODEL, ORACLE)


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (missing folders, no model, empty test window)."""


class RecommenderScorer:
    """Ranks candidates with a liveloop Recommender as the service does: user tower, retrieval, then the ranker."""

    def __init__(self, name: str, recommender, split: EvalSplit):
        from liveloop.model.history import Histories
        from liveloop.model.ranker import Popularity
        from liveloop.model.scoring import CatalogueScorer
        from liveloop.training.examples import live_after

        self.name, self.rec = name, recommender
        history = split.history
        self.hist = Histories.from_events(history["events"], history["streams"])
        catalogue = sorted(set(history["items"]["item_id"].astype(str)) | set(split.candidate_ids))
        self.scorer = CatalogueScorer.from_items(recommender, history["items"], Popularity.from_histories(self.hist),
                                                 history["streams"], item_ids=catalogue)
        self.cand = np.array([self.scorer.table.row_of[c] for c in split.candidate_ids], dtype=np.int64)
        self.item_ids = list(split.candidate_ids)
        hosts = live_after(history["streams"], split.as_of, split.as_of + pd.Timedelta(days=1))
        self.live_host = np.array([hosts.get(c, "") for c in self.item_ids], dtype=object)
        self.t = pd.Timestamp(split.as_of).value
        self._last: tuple[list, np.ndarray] | None = None

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        if list(item_ids) != self.item_ids:
            raise EvaluationError("a recommender scorer ranks only the candidates it was built for")
        window = self.rec.config.history_window
        states = [self.hist.state_at(str(u), self.t, window) for u in user_ids]
        vecs = self.scorer.user_vectors(states)
        self._last = (states, vecs)
        return np.stack([self.scorer.scores(s, v, self.cand, self.live_host, self.t) for s, v in zip(states, vecs)]) \
            if states else np.zeros((0, len(self.cand)))

    def ctr_last(self) -> np.ndarray:
        """CTR probabilities for the users of the last `score` call, against every candidate."""
        states, vecs = self._last
        return np.stack([self.scorer.ctr(s, v, self.cand, self.live_host, self.t) for s, v in zip(states, vecs)])


class FrozenEncoderScorer:
    """The pretrained encoder untouched: the user's recent behaviour as text vs each item's text, by cosine."""

    name = FROZEN

    def __init__(self, encoder, split: EvalSplit, window: int):
        from liveloop.model.text import item_texts, user_texts

        self.encoder = encoder
        texts = item_texts(split.history["items"], split.history["streams"])
        self.item_ids = list(split.candidate_ids)
        self.item_vecs = encoder.encode([texts.get(i, "unknown item") for i in self.item_ids])
        self.contexts = user_texts(split.history["events"], split.history["items"], split.as_of, max_events=window)

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        from liveloop.model.text import NO_HISTORY

        texts = [self.contexts.get(u, NO_HISTORY) for u in user_ids]
        return self.encoder.encode(texts) @ self.item_vecs.T


class OracleScorer:
    """The simulator's hidden preference for each (user, item) on the test day."""

    name = ORACLE

    def __init__(self, truth_dir: Path, day):
        self.truth_dir, self.day = truth_dir, day

    def score(self, user_ids: list[str], item_ids: list[str]) -> np.ndarray:
        from liveloop.data.simulator import oracle_scores

        return np.asarray(oracle_scores(self.truth_dir, user_ids, item_ids, self.day), dtype=np.float64)


@dataclass
class _Targets:
    """Candidate positions of each user's targets and the CTR evaluation pairs, shared by every scorer."""

    positions: list[np.ndarray]
    slice_masks: dict[str, list[np.ndarray]]
    ctr_users: np.ndarray
    ctr_items: np.ndarray
    ctr_labels: np.ndarray
    ctr_source: str
    tie_key: np.ndarray = field(repr=False)


def _targets(split: EvalSplit, negatives: int, seed: int) -> _Targets:
    col = {item: j for j, item in enumerate(split.candidate_ids)}
    positions = [np.array([col[t] for t in targets], dtype=np.int64) for targets in split.targets]
    rng = np.random.default_rng(seed)
    # CTR pairs: wanted items are positives; impressed-but-not-wanted items are negatives when the data has
    # impressions, otherwise sampled candidates the user did not want.
    row = {u: i for i, u in enumerate(split.user_ids)}
    shown = split.test_events.loc[split.test_events["event_type"] == "impression", ["user_id", "item_id"]]
    shown = shown.loc[shown["user_id"].isin(row) & shown["item_id"].isin(col)].drop_duplicates()
    users, items, labels = [], [], []
    for i, pos in enumerate(positions):
        users += [i] * len(pos)
        items += pos.tolist()
        labels += [1] * len(pos)
    if not shown.empty:
        source = "impressions"
        wanted = {(split.user_ids[i], split.candidate_ids[j]) for i, j in zip(users, items)}
        for u, it in zip(shown["user_id"].astype(str), shown["item_id"].astype(str)):
            if (u, it) not in wanted:
                users.append(row[u])
                items.append(col[it])
                labels.append(0)
    else:
        source = "sampled"
        n = len(split.candidate_ids)
        for i, pos in enumerate(positions):
            sample = rng.choice(n, size=min(negatives + len(pos), n), replace=False)
            sample = sample[~np.isin(sample, pos)][:negatives]
            users += [i] * len(sample)
            items += sample.tolist()
            labels += [0] * len(sample)
    return _Targets(
        positions=positions,
        slice_masks=split.target_slices(),
        ctr_users=np.asarray(users, dtype=np.int64),
        ctr_items=np.asarray(items, dtype=np.int64),
        ctr_labels=np.asarray(labels, dtype=np.int64),
        ctr_source=source,
        tie_key=rng.permutation(len(split.candidate_ids)),
    )


def _ranks_and_top(scores: np.ndarray, positions: list[np.ndarray], tie_key: np.ndarray, k: int):
    """1-based rank of every target (ties broken by tie_key) and the top-k candidate positions per user."""
    ranks = []
    for row, pos in zip(scores, positions):
        target = row[pos][:, None]
        ahead = (row[None, :] > target) | ((row[None, :] == target) & (tie_key[None, :] < tie_key[pos][:, None]))
        ranks.append(ahead.sum(axis=1) + 1)
    k = min(k, scores.shape[1])
    # order by (-score, tie_key): argsort of a stable sort on tie_key first, then on -score
    by_key = np.argsort(tie_key)
    order = by_key[np.argsort(-scores[:, by_key], axis=1, kind="stable")[:, :k]]
    return ranks, order


def _summarise(ranks: list[np.ndarray], top: np.ndarray, n_candidates: int, masks: dict, ks: list[int]) -> dict:
    k_small, k_large = min(ks), max(ks)
    out: dict = {}
    for k in ks:
        out[f"hr@{k}"] = float(M.hit_rate(ranks, k).mean())
        out[f"recall@{k}"] = float(M.recall(ranks, k).mean())
        out[f"ndcg@{k}"] = float(M.ndcg(ranks, k).mean())
    out["mrr"] = float(M.reciprocal_rank(ranks).mean())
    out[f"coverage@{k_small}"] = M.coverage(top[:, :k_small], n_candidates)
    for name in SLICES:
        kept = [r[m] for r, m in zip(ranks, masks[name]) if m.any()]
        out[f"ndcg@{k_small}_{name}"] = float(M.ndcg(kept, k_small).mean()) if kept else None
        out[f"hr@{k_small}_{name}"] = float(M.hit_rate(kept, k_small).mean()) if kept else None
        out[f"recall@{k_large}_{name}"] = float(M.recall(kept, k_large).mean()) if kept else None
    return out


def score_all(scorers: list, split: EvalSplit, cfg, seed: int) -> tuple[dict, dict]:
    """Run every scorer over the split in user chunks; returns (metrics per scorer name, per-user NDCG@k arrays)."""
    targets = _targets(split, cfg.auc_negatives, seed)
    k_small, k_large = min(cfg.ks), max(cfg.ks)
    results, per_user = {}, {}
    for scorer in scorers:
        started = time.perf_counter()
        ranks, tops, ctr_scores = [], [], np.zeros(len(targets.ctr_labels))
        has_ctr = hasattr(scorer, "ctr_last")
        for start in range(0, len(split.user_ids), cfg.user_batch_size):
            stop = min(start + cfg.user_batch_size, len(split.user_ids))
            scores = scorer.score(split.user_ids[start:stop], split.candidate_ids)
            chunk_ranks, chunk_top = _ranks_and_top(scores, targets.positions[start:stop], targets.tie_key, k_large)
            ranks += chunk_ranks
            tops.append(chunk_top)
            # AUC of the CTR probabilities where the scorer has them, else of its ranking scores (AUC only reads
            # the order), so the oracle's AUC is the ceiling the model's CTR is read against
            in_chunk = (targets.ctr_users >= start) & (targets.ctr_users < stop)
            probs = scorer.ctr_last() if has_ctr else scores
            ctr_scores[in_chunk] = probs[targets.ctr_users[in_chunk] - start, targets.ctr_items[in_chunk]]
        metrics = _summarise(ranks, np.concatenate(tops), len(split.candidate_ids), targets.slice_masks, cfg.ks)
        metrics["auc"] = M.auc(targets.ctr_labels, ctr_scores)
        metrics["auc_of"] = "ctr" if has_ctr else "scores"
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        results[scorer.name] = metrics
        per_user[scorer.name] = M.ndcg(ranks, k_small)
        log.info("%-16s ndcg@%d %.4f  hr@%d %.4f  (%.1fs)", scorer.name, k_small, metrics[f"ndcg@{k_small}"],
                 k_small, metrics[f"hr@{k_small}"], metrics["seconds"])
    setup = {
        **split.info,
        "users": len(split.user_ids),
        "targets": int(sum(len(p) for p in targets.positions)),
        "candidates": len(split.candidate_ids),
        "slice_users": {name: int(sum(m.any() for m in targets.slice_masks[name])) for name in SLICES},
        "auc_pairs": {"source": targets.ctr_source, "positives": int(targets.ctr_labels.sum()),
                      "negatives": int((targets.ctr_labels == 0).sum())},
    }
    return {"setup": setup, "models": results}, per_user


def best_baseline(models: dict | None, metric: str) -> tuple[str, float] | None:
    """(name, value) of the scored baseline highest on `metric`: the model and the oracle (a ceiling) are not ones."""
    scored = [(n, m[metric]) for n, m in (models or {}).items() if n not in NOT_BASELINES and m.get(metric) is not None]
    return max(scored, key=lambda pair: pair[1]) if scored else None


def compare_to_baselines(result: dict, per_user: dict, cfg, seed: int) -> dict:
    """Best baseline by NDCG@k and the paired-bootstrap interval of model / best baseline (per-user resampling)."""
    metric = cfg.ndcg_metric
    best_pair = best_baseline(result["models"], metric)
    if MODEL not in result["models"] or best_pair is None:
        return {}
    best, best_value = best_pair
    model_value = result["models"][MODEL][metric]
    low, high = M.paired_bootstrap_ratio(per_user[MODEL], per_user[best], cfg.bootstrap_samples, seed)
    return {
        "best_baseline": best,
        "metric": metric,
        "ratio": model_value / best_value if best_value > 0 else None,
        "ratio_ci95": [low, high],
        "bootstrap_samples": cfg.bootstrap_samples,
    }


def evaluate_split(cfg, split: EvalSplit, model_dir: Path | None, truth_dir: Path | None = None,
                   baselines: bool = True, day=None, encoder=None) -> dict:
    """Score the model (if given), the baselines (if asked) and the oracle (if truth is given) on one split."""
    from liveloop.model.vectors import TextEncoder

    scorers: list = []
    if model_dir is not None or baselines:
        encoder = encoder or TextEncoder(cfg.model.encoder, Path(cfg.paths.state) / "vectors")
    if model_dir is not None:
        from liveloop.model.recommender import Recommender

        scorers.append(RecommenderScorer(MODEL, Recommender.load(model_dir, encoder=encoder), split))
    if baselines:
        log.info("fitting ID baselines on %d history events", len(split.history["events"]))
        scorers += id_baselines(split.history["events"], split.as_of, cfg.evaluate, cfg.seed, cfg.model.popularity_days)
        scorers.append(FrozenEncoderScorer(encoder, split, cfg.model.history_window))
    if truth_dir is not None:
        scorers.append(OracleScorer(Path(truth_dir), day if day is not None else split.as_of))
    if not scorers:
        raise EvaluationError("nothing to evaluate: no model dir, baselines off and no simulator truth")
    result, per_user = score_all(scorers, split, cfg.evaluate, cfg.seed)
    result["comparison"] = compare_to_baselines(result, per_user, cfg.evaluate, cfg.seed)
    if ORACLE in result["models"] and MODEL in result["models"]:
        metric = cfg.evaluate.ndcg_metric
        oracle = result["models"][ORACLE][metric]
        result["comparison"]["model_over_oracle"] = result["models"][MODEL][metric] / oracle if oracle else None
    result["per_user"] = {name: [float(x) for x in values] for name, values in per_user.items()}
    return result


def _require_batch(path: Path, role: str) -> Path:
    path = Path(path)
    if not (path / "events.parquet").exists():
        raise EvaluationError(f"{role} {path} is not a batch folder (no events.parquet)")
    return path


def evaluate_model(cfg, model_dir, history_dirs, test_dir, truth_dir=None, out_json=None, out_md=None,
                   baselines: bool = True) -> dict:
    """Evaluate a model dir on the batch after `history_dirs`; returns {"setup", "models": {name: metrics}, ...}.

    The fine-tuned model is reported as "model"; baselines by their names; "oracle" when simulator truth is given.
    """
    if model_dir is not None and not (Path(model_dir) / "model.safetensors").exists():
        raise EvaluationError(f"{model_dir} is not a model dir (no model.safetensors)")
    history_dirs = [_require_batch(d, "history batch") for d in history_dirs]
    test_dir = _require_batch(test_dir, "test batch")
    test = read_batch(test_dir)
    history = concat_batches(history_dirs) if history_dirs else {t: test[t].iloc[0:0] for t in TABLES}
    split = next_window(history, test, max_users=cfg.evaluate.max_users, seed=cfg.seed)
    try:
        day = batch_day(test_dir)
    except ValueError:
        day = split.as_of.date()
    result = evaluate_split(cfg, split, model_dir, truth_dir, baselines, day=day)
    result["setup"].update(model_dir=str(model_dir), test_dir=str(test_dir), history_batches=len(history_dirs))
    write_outputs(result, out_json, out_md, title=f"Evaluation on {Path(test_dir).name}")
    return result


def write_outputs(result: dict, out_json, out_md, title: str) -> None:
    from liveloop.evaluation.report import markdown_report

    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(result, indent=2, default=str))
    if out_md is not None:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        Path(out_md).write_text(markdown_report(result, title))

