"""Stage 2 of an update: the LightGBM ranker (lambdarank over the items live after a cut) and the CTR model (binary
on impressions), both over `liveloop.model.ranker.pair_features` of the freshly trained towers.

The ranker is fitted on groups built from the labels before a validation start (the newest day, or a single day's
last cut) and compared on the groups after it with what it would replace: the plain retrieval order and the start
model's ranker; the CTR model is compared with the start model's. The better one is kept, so stage 2 never ships
something worse than its start on validation. A new model that wins is refitted on all groups with the tree count
validation chose.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from liveloop.config import TrainConfig
from liveloop.model.ranker import FEATURES, Ranker
from liveloop.model.scoring import CatalogueScorer
from liveloop.training.examples import TrainingData, ctr_rows, rank_groups

K = 10
MIN_GROUPS = 10


def balanced_ndcg(scores: np.ndarray, labels: np.ndarray, sizes: np.ndarray, at_start: np.ndarray) -> float:
    """Mean of group NDCG@k over groups cut at a day's start and over later cuts (each kind counts the same, so a
    ranker that wins in-session by losing tomorrow's question is not chosen)."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts = []
    for kind in (at_start, ~at_start):
        if kind.any():
            rows = np.concatenate([np.arange(starts[g], starts[g] + sizes[g]) for g in np.flatnonzero(kind)])
            parts.append(group_ndcg(scores[rows], labels[rows], sizes[kind]))
    return float(np.mean(parts)) if parts else 0.0


def group_ndcg(scores: np.ndarray, labels: np.ndarray, sizes: np.ndarray, k: int = K) -> float:
    """Mean binary NDCG@k over groups (label > 0 is relevant); ties are broken against the relevant items."""
    out, start = [], 0
    for n in sizes:
        s, rel = scores[start:start + n], labels[start:start + n] > 0
        start += n
        if not rel.any():
            continue
        order = np.lexsort((rel, -s))[:k]  # by score desc, irrelevant first among ties
        gains = rel[order] / np.log2(np.arange(2, len(order) + 2))
        ideal = (1.0 / np.log2(np.arange(2, min(k, rel.sum()) + 2))).sum()
        out.append(gains.sum() / ideal)
    return float(np.mean(out)) if out else 0.0


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    pos = labels > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    edges = np.minimum((np.asarray(probs) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = edges == b
        if m.any():
            total += m.sum() * abs(labels[m].mean() - probs[m].mean())
    return float(total / max(1, len(labels)))


@dataclass
class RankMatrix:
    """Every rank group's candidate rows (`CatalogueScorer.generated`: what the scorer ranks)."""

    x: np.ndarray  # [rows, features]
    labels: np.ndarray  # [rows] take grade (0 = not taken)
    sizes: np.ndarray  # [groups] rows per group
    days: np.ndarray  # [groups] the group's day
    at_start: np.ndarray  # [groups] cut at the day's start
    cold: np.ndarray  # [groups] the user has neither a positive nor a comment yet (what cold_order decides)
    cuts: np.ndarray  # [groups] cut time in ns
    users: np.ndarray  # [groups] user id


def ranking_matrix(scorer: CatalogueScorer, data: TrainingData, tc: TrainConfig, seed: int,
                   memo: dict | None = None) -> RankMatrix | None:
    """The groups' rows. `memo` (one dict across calls on the same scorer) keeps each (user, cut, candidate list)'s
    features: the fit matrix repeats most groups of the full one with fewer labels, and features never read labels."""
    groups = rank_groups(data, tc, seed)
    memo = {} if memo is None else memo
    codes, built = memo.setdefault("lists", {}), memo.setdefault("groups", {})  # a code per distinct candidate list
    window = scorer.rec.config.history_window
    by_id: dict[int, int] = {}  # a cut's groups share one list object: look each up once
    keys = [(g.user_id, g.t_ns, by_id.setdefault(id(g.candidates), codes.setdefault(tuple(g.candidates), len(codes))))
            for g in groups]
    first = {}
    for g, key in zip(groups, keys):
        if key not in built:
            first.setdefault(key, g)
    states = [data.hist.state_at(g.user_id, g.t_ns, window) for g in first.values()]
    vecs = scorer.user_vectors(states) if states else np.zeros((0, scorer.table.base.shape[1]))
    for (key, g), state, vec in zip(first.items(), states, vecs):
        keep_ids = np.array([j for j, c in enumerate(g.candidates) if c in scorer.table.row_of], dtype=np.int64)
        cand = np.array([scorer.table.row_of[g.candidates[j]] for j in keep_ids], dtype=np.int64)
        # exactly the candidates the scorer ranks: a taken item beyond the generator's reach is dropped, not added
        # (added, every such outsider was a positive and the ranker learned "a weak retrieval match is wanted": on
        # Online Retail it ranked below chance)
        pick = scorer.generated(state, scorer.table.vecs[cand] @ vec, cand, g.t_ns)
        hosts = np.asarray(g.live_host, dtype=object)[keep_ids[pick]]
        built[key] = [keep_ids[pick], (state, vec, cand[pick], hosts), None]  # features: on first use (below)
    xs, ys, meta = [], [], []
    for g, key in zip(groups, keys):
        entry = built[key]
        labels = g.labels[entry[0]]
        if not (labels > 0).any():
            continue
        if entry[2] is None:
            state, vec, cand, hosts = entry[1]
            entry[2] = scorer.features(state, vec, cand, hosts, g.t_ns)
        xs.append(entry[2])
        ys.append(labels)
        state = entry[1][0]
        meta.append((len(labels), g.day, g.t_ns == pd.Timestamp(g.day).value,
                     state.positives == 0 and not state.comments, g.t_ns, g.user_id))
    if not xs:
        return None
    sizes, days, at_start, cold, cuts, users = zip(*meta)
    return RankMatrix(np.concatenate(xs), np.concatenate(ys), np.asarray(sizes), np.asarray(days),
                      np.asarray(at_start), np.asarray(cold), np.asarray(cuts, dtype=np.int64),
                      np.asarray(users, dtype=object))


def validation_start(days: np.ndarray, cuts_ns: np.ndarray, share: float) -> int:
    """Where the ranker's validation period starts (ns): the newest days holding `share` of the groups, or, with one
    day, its last cut. The fitted ranker only sees labels before it: a group's labels run to its day's end, so an
    earlier cut of the same day holds every take of a later cut, and a ranker fitted on it would be validated on
    items it was shown taken (its item-level features identify them), not on the question the loop asks next."""
    from liveloop.training.loop import newest_days

    if len(set(days)) >= 2:
        return int(pd.Timestamp(min(newest_days(pd.Series(days), share))).value)
    return int(cuts_ns.max())


def _rows(sizes: np.ndarray, groups: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.concatenate([np.arange(starts[g], starts[g] + sizes[g]) for g in np.flatnonzero(groups)]) if groups.any() \
        else np.zeros(0, dtype=np.int64)


def recency_weights(days: np.ndarray, sizes: np.ndarray, half_life: float | None) -> np.ndarray | None:
    """Row weights halving every `half_life` days before the newest group's day (None: every group counts the same),
    so after a drift the newest days outweigh the fortnight before them."""
    if half_life is None:
        return None
    stamps = pd.to_datetime(pd.Series(days)).to_numpy("datetime64[D]")
    age = (stamps.max() - stamps).astype(np.float64)
    return np.repeat(0.5 ** (age / half_life), sizes)


def _lgb_params(tc: TrainConfig, seed: int, objective: str) -> dict:
    return {"objective": objective, "learning_rate": tc.rank_lr, "num_leaves": tc.rank_leaves,
            "min_data_in_leaf": 20, "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1,
            "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1,
            **({"eval_at": [K], "metric": "ndcg"} if objective == "lambdarank" else {"metric": "auc"})}


def fit_ranker(scorer: CatalogueScorer, data: TrainingData, tc: TrainConfig, seed: int,
               start: dict | None) -> tuple[Ranker | None, dict]:
    """The ranker and CTR model to ship, with what was compared on validation."""
    import lightgbm as lgb

    info: dict = {"features": list(FEATURES)}
    start_ranker = Ranker.from_json(start) if start else None
    rank_model = start_ranker.rank_model if start_ranker is not None else None
    memo: dict = {}
    matrix = ranking_matrix(scorer, data, tc, seed, memo)  # every group: what a winning ranker is refitted on
    if matrix is not None:
        x, y, sizes, at_start, cold, cuts = (matrix.x, matrix.labels, matrix.sizes, matrix.at_start, matrix.cold,
                                             matrix.cuts)
        start = validation_start(matrix.days, cuts, max(tc.validation, 0.2))
        if start_ranker is not None:  # the start was fitted on every earlier day: it is compared on the new ones only
            start = max(start, data.unseen_start)
        val = cuts >= start
        ts = pd.to_datetime(data.label_events["ts"]).to_numpy("datetime64[ns]").astype(np.int64)
        fit = ranking_matrix(scorer, replace(data, label_events=data.label_events.loc[ts < start]), tc, seed, memo)
        fit_groups = 0 if fit is None else len(fit.sizes)
        info.update(groups=int(len(sizes)), fit_groups=fit_groups, validation_groups=int(val.sum()), rows=int(len(y)),
                    validation_start=str(pd.Timestamp(start)))
        if val.sum() >= MIN_GROUPS and fit_groups >= MIN_GROUPS:
            va_rows = _rows(sizes, val)
            train_set = lgb.Dataset(fit.x, fit.labels, group=fit.sizes, feature_name=list(FEATURES),
                                    weight=recency_weights(fit.days, fit.sizes, tc.rank_half_life_days))
            valid_set = lgb.Dataset(x[va_rows], y[va_rows], group=sizes[val], reference=train_set)
            booster = lgb.train(_lgb_params(tc, seed, "lambdarank"), train_set, num_boost_round=tc.rank_trees,
                                valid_sets=[valid_set], callbacks=[lgb.early_stopping(30, verbose=False)])
            xv, yv, sv, av = x[va_rows], y[va_rows], sizes[val], at_start[val]
            options = {"retrieval": balanced_ndcg(xv[:, 0], yv, sv, av),
                       "new_ranker": balanced_ndcg(booster.predict(xv, num_iteration=booster.best_iteration), yv, sv, av)}
            if start_ranker is not None and start_ranker.ranks:
                options["start_ranker"] = balanced_ndcg(start_ranker.rank_scores(xv), yv, sv, av)
            choice = max(options, key=lambda name: (options[name], name == "start_ranker"))
            info.update(validation_ndcg=options, kept=choice, trees=int(booster.best_iteration or tc.rank_trees))
            info["cold_order"] = (cold_order(booster, x, y, sizes, val & cold) if choice == "new_ranker" else
                                  (start_ranker.info.get("cold_order", "retrieval") if choice == "start_ranker" else "retrieval"))
            rank_model = {"retrieval": None, "start_ranker": rank_model,
                          "new_ranker": refit(booster, _lgb_params(tc, seed, "lambdarank"),
                                              lgb.Dataset(x, y, group=sizes, feature_name=list(FEATURES),
                                                          weight=recency_weights(matrix.days, sizes, tc.rank_half_life_days)))
                          if choice == "new_ranker" else None}[choice]
        else:
            info["kept"] = "start_ranker" if rank_model else "retrieval"
            info["reason"] = "too few groups to fit and validate a ranker"
    ctr_model, ctr_info = fit_ctr(scorer, data, tc, seed, start_ranker, matrix)
    info["ctr"] = ctr_info
    if rank_model is None and ctr_model is None:
        return None, info
    kept_start = rank_model is not None and start_ranker is not None and rank_model == start_ranker.rank_model
    trained_on = start_ranker.info.get("trained_on") if kept_start else [str(d) for d in data.new_days]
    return Ranker(rank_model, ctr_model, {"trained_on": trained_on,  # the days the rank model was fitted on
                                           "cold_order": info.get("cold_order", "retrieval")}), info


def cold_order(booster, x: np.ndarray, y: np.ndarray, sizes: np.ndarray, groups: np.ndarray) -> str:
    """How to order users with neither a positive nor a comment yet: by the ranker only when it beats the retrieval
    order on such validation groups; with too few of them, the start (retrieval) stays. A user whose only signal is a
    comment always gets the retrieval order (the tower reads the comment)."""
    if groups.sum() < MIN_GROUPS:
        return "retrieval"
    rows = _rows(sizes, groups)
    ranked = group_ndcg(booster.predict(x[rows], num_iteration=booster.best_iteration), y[rows], sizes[groups])
    return "ranker" if ranked > group_ndcg(x[rows, 0], y[rows], sizes[groups]) else "retrieval"


def ctr_matrix(scorer: CatalogueScorer, hist, rows: pd.DataFrame, streams: pd.DataFrame):
    """(features, labels, row positions used) of impression rows (`ctr_rows`), each scored from the user's state at
    the session's start, as /score sees a viewer in the room; rows on items outside the catalogue are skipped."""
    window = scorer.rec.config.history_window
    host_of = dict(zip(streams["stream_id"].astype(str), streams["host_id"].astype(str)))
    rows = rows.reset_index(drop=True)
    cand_all = rows["item_id"].map(scorer.table.row_of).fillna(-1).to_numpy(np.int64)  # mapped once, not per session
    host_all = rows["stream_id"].map(host_of).fillna("").to_numpy(object)
    codes = rows.groupby(["user_id", "t"], sort=False).ngroup().to_numpy()  # sessions in order of appearance
    sessions = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1]) if len(rows) else []
    users, times = rows["user_id"].to_numpy(), rows["t"].to_numpy()
    starts = [pd.Timestamp(times[at[0]]).value for at in sessions]
    states = [hist.state_at(str(users[at[0]]), t, window) for at, t in zip(sessions, starts)]
    vecs = scorer.user_vectors(states) if states else []
    xs, ys, used = [], [], []
    labels = rows["label"].to_numpy()
    for at, t, state, vec in zip(sessions, starts, states, vecs):
        at = at[cand_all[at] >= 0]
        if len(at):
            xs.append(scorer.features(state, vec, cand_all[at], host_all[at], t))
            ys.append(labels[at])
            used.append(at)
    if not xs:
        return np.zeros((0, len(FEATURES)), np.float32), np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(used)


def fit_ctr(scorer: CatalogueScorer, data: TrainingData, tc: TrainConfig, seed: int, start_ranker: Ranker | None,
            matrix) -> tuple[str | None, dict]:
    """Binary LightGBM on impressions (taken vs shown-not-taken); without impressions, on the rank groups."""
    import lightgbm as lgb

    rows = ctr_rows(data.label_events, tc.max_ctr_rows)
    if len(rows):
        source = "impressions"
        x, y, used = ctr_matrix(scorer, data.hist, rows, data.tables["streams"])
        times = pd.to_datetime(rows["t"]).to_numpy("datetime64[ns]").astype(np.int64)[used]
        if not len(y):
            return (start_ranker.ctr_model if start_ranker else None), {"kept": "start", "reason": "no usable impressions"}
    elif matrix is not None:
        source = "rank groups (no impressions in the data)"
        x, y = matrix.x, (matrix.labels > 0).astype(np.float64)
        times = np.repeat(matrix.cuts, matrix.sizes)
    else:
        return (start_ranker.ctr_model if start_ranker else None), {"kept": "start", "reason": "no rows"}
    val = np.arange(len(y)) >= int(len(y) * 0.8)  # the newest rows (ctr_rows are in time order)
    if start_ranker is not None and start_ranker.has_ctr:  # as for the ranker: the start never saw the new days
        val &= times >= data.unseen_start
    info: dict = {"source": source, "rows": int(len(y)), "positive_share": float(y.mean()),
                  "validation_rows": int(val.sum()),
                  "validation_from": str(pd.Timestamp(int(times[val].min()))) if val.any() else None}
    if (~val).sum() < 100 or val.sum() < 50 or y[~val].min() == y[~val].max():
        info.update(kept="start", reason="too few rows or one class only")
        return (start_ranker.ctr_model if start_ranker else None), info
    train_set = lgb.Dataset(x[~val], y[~val], feature_name=list(FEATURES))
    valid_set = lgb.Dataset(x[val], y[val], reference=train_set)
    booster = lgb.train(_lgb_params(tc, seed, "binary"), train_set, num_boost_round=tc.rank_trees,
                        valid_sets=[valid_set], callbacks=[lgb.early_stopping(30, verbose=False)])
    probs = booster.predict(x[val], num_iteration=booster.best_iteration)
    new_auc = auc(y[val], probs)
    options = {"new": new_auc or 0.0}
    if start_ranker is not None and start_ranker.has_ctr:
        options["start"] = auc(y[val], start_ranker.ctr(x[val])) or 0.0
    choice = max(options, key=lambda name: (options[name], name == "start"))
    info.update(validation_auc=options, validation_ece=ece(y[val], probs), kept=choice)
    if choice != "new":
        return start_ranker.ctr_model, info
    return refit(booster, _lgb_params(tc, seed, "binary"), lgb.Dataset(x, y, feature_name=list(FEATURES))), info


def refit(booster, params: dict, full) -> str:
    """The chosen model refitted on every row, validation included, with the tree count validation chose: the
    newest day is what the next one most resembles, so the shipped model must have learned from it too."""
    import lightgbm as lgb

    trees = int(booster.best_iteration or booster.current_iteration())
    return lgb.train(params, full, num_boost_round=max(1, trees)).model_to_string()

