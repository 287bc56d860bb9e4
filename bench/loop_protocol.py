"""The loop's own question, day by day: does each update's model beat the baselines on the batch's held-out tail?

Simulates `--days` days of the world in params.yaml (scenario and seed selectable), then for each day d does what
`make run` does: split the batch by time (loop.holdout_fraction), train on the head (warm start from day d-1's model,
replay from the earlier days), and score on the tail the trained model, the same model without its ranker, an
untrained tower, frozen_encoder, every id baseline (refit on the same history) and the simulator oracle. Every step is
the project's own function (`simulate`, `split_by_time`, `train`, `next_window`, `score_all`).

    .venv/bin/python bench/loop_protocol.py --out bench/_runs/loop --days 4
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from liveloop.config import load_config
from liveloop.workspace import Workspace

HISTORY_BUCKETS = {"0": (0, 1), "1-4": (1, 5), "5+": (5, np.inf)}  # the viewer's positives before a visit


def session_ctr(rec, scorer, split, test: dict, truth: Path) -> dict:
    """CTR as /score is asked it: every test-window impression scored from the viewer's state at the start of that
    room visit (history + the window's events before it), labelled taken in the visit or not (`ctr_rows`, the CTR
    model's own training rows). AUC of the CTR model, of the untrained tower's cosine and of the oracle on the same
    pairs, the CTR model's calibration error, and model and oracle AUC by the viewer's positives before the visit."""
    import pandas as pd

    from liveloop.data.simulator import oracle_scores
    from liveloop.model.history import Histories
    from liveloop.model.ranker import FEATURES, Popularity
    from liveloop.model.scoring import CatalogueScorer
    from liveloop.training.examples import ctr_rows
    from liveloop.training.ranking import auc, ctr_matrix, ece

    events = pd.concat([split.history["events"], test["events"]], ignore_index=True)
    hist = Histories.from_events(events, split.history["streams"])
    at_visit = CatalogueScorer(rec, scorer.table, Popularity.from_histories(hist))
    rows = ctr_rows(test["events"], len(test["events"]))
    x, y, used = ctr_matrix(at_visit, hist, rows, split.history["streams"])
    if not len(y) or y.min() == y.max():
        return {}
    probs = rec.ranker.ctr(x) if rec.ranker is not None and rec.ranker.has_ctr else None
    users, items = rows["user_id"].to_numpy()[used], rows["item_id"].to_numpy()[used]
    u_ids, u_pos = np.unique(users, return_inverse=True)
    i_ids, i_pos = np.unique(items, return_inverse=True)
    oracle = oracle_scores(truth, list(u_ids), list(i_ids), split.as_of.date())[u_pos, i_pos]
    # where the gap to the oracle is: viewers by how many positives they had before the visit (the oracle knows every
    # viewer's tastes; the model only what their history shows)
    positives = np.nan_to_num(np.expm1(x[:, FEATURES.index("log_user_positives")]), nan=0.0)
    by_history = {}
    for name, (low, high) in HISTORY_BUCKETS.items():
        rows_of = (positives >= low) & (positives < high)
        if rows_of.sum() and 0 < y[rows_of].mean() < 1:
            by_history[name] = {"pairs": int(rows_of.sum()), "oracle": round(auc(y[rows_of], oracle[rows_of]), 3),
                                "model": None if probs is None else round(auc(y[rows_of], probs[rows_of]), 3)}
    return {"pairs": int(len(y)), "positive_share": round(float(y.mean()), 3),
            "model": None if probs is None else round(auc(y, probs), 3),
            "pretrained_cosine": round(auc(y, x[:, FEATURES.index("pretrained_cosine")]), 3),
            "oracle": round(auc(y, oracle), 3), "model_ece": None if probs is None else round(ece(y, probs), 3),
            "by_history": by_history}


def run(params: Path, out: Path, days: int, scenario: str | None, seed: int | None, threads: int | None) -> list[dict]:
    import torch

    from liveloop.data.batches import concat_batches, list_batches, read_batch, split_by_time
    from liveloop.data.simulator import simulate
    from liveloop.evaluation.baselines import id_baselines
    from liveloop.evaluation.evaluate import FrozenEncoderScorer, OracleScorer, RecommenderScorer, score_all
    from liveloop.evaluation.protocol import next_window
    from liveloop.model.recommender import Recommender
    from liveloop.training import train

    if threads:
        torch.set_num_threads(threads)
    overrides = {"simulate.days": days, **({"simulate.scenario": scenario} if scenario else {}),
                 **({"seed": seed} if seed is not None else {})}
    cfg = load_config(params, overrides)
    if out.exists():
        shutil.rmtree(out)
    ws = Workspace(root=out, state=Path(cfg.paths.state))
    truth = out / "truth"
    simulate(cfg.simulate, cfg.seed, out / "landing", truth)
    ws.accepted.mkdir(parents=True)
    rows, prev = [], None
    batches = list_batches(out / "landing")
    for d, batch in enumerate(batches):
        accepted = ws.accepted / batch.name
        shutil.copytree(batch, accepted)
        # the loop's own split folders: training then reads earlier days' held-out tails as history only, as the loop does
        head, tail = split_by_time(accepted, cfg.loop.holdout_fraction, ws.splits / "train" / batch.name,
                                   ws.splits / "holdout" / batch.name)
        model_dir = out / "models" / batch.name
        started = time.perf_counter()
        train(cfg, ws, [head], str(prev) if prev else "scratch", model_dir)
        seconds = time.perf_counter() - started
        prev = model_dir
        history = concat_batches([*[ws.accepted / b.name for b in batches[:d]], head])
        split = next_window(history, read_batch(tail), max_users=None, seed=cfg.seed)
        rec = Recommender.load(model_dir, cache_dir=ws.state / "vectors")
        tower = Recommender.load(model_dir, encoder=rec.encoder)
        tower.ranker = None
        fresh = Recommender.from_config(cfg.model, encoder=rec.encoder, seed=cfg.seed)
        scorers = [RecommenderScorer("model", rec, split), RecommenderScorer("tower_only", tower, split),
                   RecommenderScorer("fresh", fresh, split),
                   FrozenEncoderScorer(rec.encoder, split, cfg.model.history_window),
                   *id_baselines(split.history["events"], split.as_of, cfg.evaluate, cfg.seed, cfg.model.popularity_days),
                   OracleScorer(truth, split.as_of.date())]
        result, _ = score_all(scorers, split, cfg.evaluate, cfg.seed)
        session = session_ctr(rec, scorers[0].scorer, split, read_batch(tail), truth)
        metrics = json.loads((model_dir / "state.json").read_text())["metrics"]
        row = {"day": batch.name, "users": len(split.user_ids), "train_s": round(seconds, 1),
               "ndcg@10": {n: round(m["ndcg@10"], 4) for n, m in result["models"].items()},
               "auc": {n: (None if m["auc"] is None else round(m["auc"], 3)) for n, m in result["models"].items()},
               "session_auc": session, "ranker_kept": metrics.get("ranker", {}).get("kept")}
        print(json.dumps(row), flush=True)
        rows.append(row)
    (out / "loop_protocol.json").write_text(json.dumps(rows, indent=1))
    names = list(rows[0]["ndcg@10"])
    print("| day | users | " + " | ".join(names) + " | model AUC | oracle AUC | visit AUC: model / oracle | ECE |")
    print("|---" * (len(names) + 6) + "|")
    for r in rows:
        v = r["session_auc"]
        print(f"| {r['day']} | {r['users']} | " + " | ".join(f"{r['ndcg@10'][n]:.3f}" for n in names)
              + f" | {r['auc']['model']} | {r['auc']['oracle']} | {v.get('model')} / {v.get('oracle')} | {v.get('model_ece')} |")
    print("| mean | | " + " | ".join(f"{np.mean([r['ndcg@10'][n] for r in rows]):.3f}" for n in names) + " | | | | |")
    print("\n| viewer's positives before the visit | pairs | visit AUC: model / oracle (pair-weighted over days) |")
    print("|---|---|---|")
    for name in HISTORY_BUCKETS:
        parts = [r["session_auc"]["by_history"][name] for r in rows if name in r["session_auc"].get("by_history", {})]
        if parts and all(p["model"] is not None for p in parts):
            weights = [p["pairs"] for p in parts]
            print(f"| {name} | {sum(weights)} | {np.average([p['model'] for p in parts], weights=weights):.3f} / "
                  f"{np.average([p['oracle'] for p in parts], weights=weights):.3f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--out", type=Path, default=Path("bench/_runs/loop"))
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--scenario", default=None, help="simulator scenario (default: params)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared CPU)")
    a = p.parse_args()
    Workspace.from_config(load_config(a.params)).apply_env()
    run(a.params, a.out, a.days, a.scenario, a.seed, a.threads)


if __name__ == "__main__":
    main()
