"""Comment intent: a new visitor's one comment naming a product type ("looking for cycling gloves") puts a product of
that type in the top 5 of the live items, with the whole model as served (tower + ranker), next to the tower alone and
the untrained encoder (comment vs item text cosine).

    .venv/bin/python bench/comment_intent.py --model models/versions/v0002 --batches data/accepted

A product type is a simulator noun (the last words of the title after the brand, e.g. "face cream"); every noun
shown in the latest batch's rooms is asked with every phrasing. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.data.batches import concat_batches, list_batches, read_batch
from liveloop.data.simulator import ALL_CATEGORIES
from liveloop.model.history import EMPTY_STATE, Histories
from liveloop.model.ranker import Popularity
from liveloop.model.recommender import Recommender
from liveloop.model.scoring import CatalogueScorer

PHRASINGS = ("looking for {noun}", "do you have a {noun}?", "can you show the {noun} again?",
             "how much is the {noun} today?", "i need a new {noun}")
TOP = 5


def live_nouns(titles: dict[str, str]) -> dict[str, list[str]]:
    """noun -> live item ids whose title names it (longest noun wins: "face cream" before "cream")."""
    nouns = sorted({n for c in ALL_CATEGORIES for n in c.nouns}, key=len, reverse=True)
    out: dict[str, list[str]] = {}
    for item, title in titles.items():
        low = title.lower()
        hit = next((n for n in nouns if n in low), None)
        if hit:
            out.setdefault(hit, []).append(item)
    return out


def run(model_dir: Path, batches_dir: Path) -> dict:
    batches = list_batches(batches_dir)
    history = concat_batches(batches)
    latest = read_batch(batches[-1])
    live = sorted({str(i) for ids in latest["streams"]["item_ids"] for i in ids})
    items = history["items"]
    titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
    nouns = live_nouns({i: titles[i] for i in live if i in titles})
    rec = Recommender.load(model_dir)
    hist = Histories.from_events(history["events"], history["streams"])
    scorer = CatalogueScorer.from_items(rec, items, Popularity.from_histories(hist), history["streams"])
    cand = np.array([scorer.table.row_of[i] for i in live], dtype=np.int64)
    host_of = {}
    for host, ids in zip(latest["streams"]["host_id"].astype(str), latest["streams"]["item_ids"]):
        for i in ids:
            host_of.setdefault(str(i), host)
    hosts = np.array([host_of.get(i, "") for i in live], dtype=object)
    t = int(pd.Timestamp(latest["streams"]["start"].max()).value)
    live_ids = np.array(live, dtype=object)
    hits = {"model": [], "tower_only": [], "frozen_encoder": []}
    for noun, wanted in sorted(nouns.items()):
        for phrasing in PHRASINGS:
            text = phrasing.format(noun=noun)
            record = {"event_id": "x", "ts": pd.Timestamp(t - 60 * 10**9), "user_id": "new-visitor", "item_id": None,
                      "stream_id": None, "event_type": "comment", "text": text, "quantity": None, "price": None}
            state = Histories.from_records([record], {}).state_at("new-visitor", t, rec.config.history_window)
            state = state if not state.empty else EMPTY_STATE
            vec = scorer.user_vectors([state])[0]
            ranked = {
                "model": scorer.scores(state, vec, cand, hosts, t),
                "tower_only": scorer.scores(state, vec, cand, hosts, t, use_ranker=False),
                "frozen_encoder": scorer.table.base[cand] @ rec.base_vectors([text])[0],
            }
            for name, scores in ranked.items():
                top = live_ids[np.argsort(-scores, kind="stable")[:TOP]]
                hits[name].append(bool(set(top) & set(wanted)))
    n_types = len(nouns)
    per = {name: float(np.mean(v)) for name, v in hits.items()}
    by_type = {name: int(sum(any(v[i * len(PHRASINGS):(i + 1) * len(PHRASINGS)]) for i in range(n_types)))
               for name, v in hits.items()}
    return {"model_dir": str(model_dir), "live_types": n_types, "phrasings": len(PHRASINGS), "hit_share": per,
            "types_hit_by_any_phrasing": by_type}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="a model dir (models/versions/vNNNN)")
    p.add_argument("--batches", type=Path, required=True, help="accepted batches (the latest one's rooms are live)")
    p.add_argument("--out", type=Path, default=None, help="JSON to write")
    args = p.parse_args(argv)
    result = run(args.model, args.batches)
    print(f"| scorer | top-{TOP} hit share ({result['live_types']} types x {result['phrasings']} phrasings) |")
    print("|---|---|")
    for name, share in result["hit_share"].items():
        print(f"| {name} | {share:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
