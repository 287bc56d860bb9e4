"""`liveloop benchmark`: the Online Retail protocol on any imported dataset, in one call.

Cut the batches at a time quantile, train a fresh model on everything before the cut with the current params
(stage 1: `evaluate.benchmark_steps` tower steps on cached vectors; stage 2: the ranker), then score it and every
baseline on returning users' first wanted item after the cut, over all items. Training runs in a private scratch
workspace (the text-vector cache is shared), so the benchmark changes nothing in the project's workspace.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from liveloop.data.batches import batch_meta, concat_batches, list_batches, read_batch, write_batch
from liveloop.evaluation.evaluate import EvaluationError, evaluate_split, write_outputs
from liveloop.evaluation.protocol import time_split
from liveloop.workspace import Workspace

log = logging.getLogger(__name__)


def batches_before(batch_dirs: list[Path], cut: pd.Timestamp, scratch: Path) -> list[Path]:
    """Batch folders holding exactly the events before `cut`: whole days as they are, the cut day truncated
    into a copy under `scratch`, later days left out."""
    kept = []
    for batch in batch_dirs:
        times = pd.read_parquet(batch / "events.parquet", columns=["ts"])["ts"]
        if times.empty or times.min() >= cut:
            continue
        if times.max() < cut:
            kept.append(batch)
            continue
        tables = read_batch(batch)
        tables["events"] = tables["events"].loc[tables["events"]["ts"] < cut]
        kept.append(write_batch(tables, scratch / batch.name, {**batch_meta(batch), "truncated_at": str(cut)}))
    return kept


def run_benchmark(cfg, ws: Workspace, data_dir, out_json) -> dict:
    """Fine-tune before the cut, evaluate model + baselines after it; writes out_json and a .md beside it.

    The fine-tuned model is kept in `<out_json without suffix>-model/` so it can be inspected or re-evaluated.
    """
    from liveloop.training import train

    data_dir, out_json = Path(data_dir), Path(out_json)
    batches = list_batches(data_dir)
    if not batches:
        raise EvaluationError(
            f"{data_dir} holds no daily batch folders (YYYY-MM-DD); import data first with "
            "`liveloop import-online-retail` or `liveloop import-interactions`"
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    log.info("reading %d batches from %s", len(batches), data_dir)
    split = time_split(concat_batches(batches), cfg.evaluate.split_quantile, cfg.evaluate.max_users, cfg.seed)
    log.info("cut at %s: %d test users, %d candidate items", split.as_of, len(split.user_ids), len(split.candidate_ids))
    timings["load_split"] = time.perf_counter() - started

    steps = cfg.evaluate.benchmark_steps if cfg.evaluate.benchmark_steps is not None else cfg.train.steps
    train_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": steps})})
    model_dir = out_json.with_name(out_json.stem + "-model")
    if model_dir.exists():
        raise EvaluationError(f"{model_dir} already exists; remove it or choose another --out")
    with tempfile.TemporaryDirectory(prefix="liveloop-benchmark-") as scratch:
        scratch = Path(scratch)
        train_batches = batches_before(batches, split.as_of, scratch / "batches")
        log.info("fine-tuning from the pretrained encoder for %d steps on %d batches", steps, len(train_batches))
        t0 = time.perf_counter()
        trained = train(train_cfg, Workspace(root=scratch / "ws", state=ws.state), train_batches, "scratch", model_dir)
        timings["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate_split(cfg, split, model_dir, baselines=True)
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    result["setup"].update(data_dir=str(data_dir), batches=len(batches), model_dir=str(model_dir))
    metrics = json.loads((model_dir / "state.json").read_text()).get("metrics", {})
    result["train"] = {"steps": trained.steps, "samples": trained.samples, "final_loss": trained.final_loss,
                       "batch_size": cfg.train.batch_size, "tower_validation_ndcg_start": metrics.get("tower_validation_ndcg_start"),
                       "tower_validation_ndcg": metrics.get("tower_validation_ndcg"), "ranker": metrics.get("ranker")}
    result["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    write_outputs(result, out_json, out_json.with_suffix(".md"), title=f"Benchmark on {data_dir.name}")
    return result
