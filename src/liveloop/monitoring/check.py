"""check_drift: compare the new batch with the reference window on every signal, apply the retrain policy, and write
one HTML report plus a JSON verdict. The CLI (`liveloop drift`) and the flows call this same function."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import DriftConfig, EvaluateConfig, ModelConfig
from liveloop.data.batches import read_batch
from liveloop.data.schema import TABLES
from liveloop.monitoring import evidently_adapter as ev
from liveloop.monitoring import embeddings, frames, model_signals
from liveloop.monitoring.policy import EMBEDDING_LABELS, decide

log = logging.getLogger(__name__)

REPORT_HTML = "drift_report.html"
VERDICT_JSON = "drift.json"
EMBEDDING_CACHE = "embedding-cache"
MIN_TEXTS = 10  # fewer texts on a side than this and the embedding classifier is noise; the signal is skipped


class DriftInputError(ValueError):
    """A reference or current batch folder is missing, incomplete or empty, or the config names unknown columns."""


def _check_batch_dir(path: Path, role: str) -> None:
    if not path.is_dir():
        raise DriftInputError(f"{role} batch {path} is not a folder")
    missing = [t for t in TABLES if not (path / f"{t}.parquet").exists()]
    if missing:
        raise DriftInputError(f"{role} batch {path} is missing tables {missing} (expected {list(TABLES)})")


def _check_inputs(reference_dirs: list[Path], current_dir: Path, cfg: DriftConfig) -> None:
    if not reference_dirs:
        raise DriftInputError("no reference batches given: drift needs the champion's training window as reference")
    for d in reference_dirs:
        _check_batch_dir(d, "reference")
    _check_batch_dir(current_dir, "current")
    if current_dir.resolve() in {d.resolve() for d in reference_dirs}:
        raise DriftInputError(f"current batch {current_dir} is also in the reference")
    known = set(frames.EVENT_COLUMNS) | set(frames.USER_COLUMNS)
    unknown = sorted(set(cfg.thresholds.column_drift) - known)
    if unknown:
        raise DriftInputError(f"drift.thresholds.column_drift names unknown columns {unknown} (known: {sorted(known)})")


def _interest(ref_events: list[pd.DataFrame], cur_events: pd.DataFrame) -> dict | None:
    """Returning users' category match (frames.interest_match), current batch vs reference batches, with the same
    history length on both sides: each reference batch against the other reference batches (leave one out), the current
    batch against the latest len(window) - 1 of them. None when the window has a single batch."""
    if len(ref_events) < 2:
        return None
    ref = np.concatenate([
        frames.interest_match(pd.concat(ref_events[:i] + ref_events[i + 1:], ignore_index=True), ref_events[i])
        for i in range(len(ref_events))
    ])
    cur = frames.interest_match(pd.concat(ref_events[1:], ignore_index=True), cur_events)
    if len(ref) == 0 or len(cur) == 0:
        return None
    before, now = float(ref.mean()), float(cur.mean())
    return {"reference": before, "current": now, "relative_drop": (before - now) / before if before > 0 else None,
            "n_reference": len(ref), "n_current": len(cur)}


def _tabular(reference: list[dict], current: dict, cfg: DriftConfig) -> tuple[dict, list[ev.Section], list[str]]:
    limits = cfg.thresholds.column_drift
    ref_frames = [frames.event_frame(t) for t in reference]
    ref_events = pd.concat(ref_frames, ignore_index=True)
    cur_events = frames.event_frame(current)
    ref_users = pd.concat([frames.user_frame(t["events"], cfg.session_gap_minutes) for t in reference], ignore_index=True)
    cur_users = frames.user_frame(current["events"], cfg.session_gap_minutes)
    columns: dict[str, dict] = {}
    sections = []
    for title, ref, cur, names in (
        ("Event mix: category, price, event type, host", ref_events, cur_events, frames.EVENT_COLUMNS),
        ("Per-user activity: events per user, session length", ref_users, cur_users, frames.USER_COLUMNS),
    ):
        chosen = {c: limits[c] for c in names if c in limits}
        if not chosen:
            continue
        results, widgets = ev.column_drift(
            frames.sample_rows(ref, cfg.max_rows, cfg.seed), frames.sample_rows(cur, cfg.max_rows, cfg.seed),
            chosen, frames.NUMERIC_COLUMNS,
        )
        columns.update(results)
        sections.append(ev.Section(title, widgets))
    share = sum(r["drift"] for r in columns.values()) / len(columns) if columns else 0.0
    new_values = {
        "category": frames.new_value_share(ref_events["category"], cur_events["category"]),
        "host_id": frames.new_value_share(
            ref_events["host_id"], cur_events.loc[cur_events["host_id"] != frames.NOT_IN_ROOM, "host_id"]
        ),
    }
    signals = {"tabular": {"drifted_share": share, "columns": columns}, "new_values": new_values,
               "repriced_share": frames.repriced_share(ref_events, cur_events)}
    notes = []
    interest = _interest(ref_frames, cur_events)
    if interest is None:
        notes.append("returning users' interests not checked: needs 2+ reference batches and users seen in both")
    else:
        signals["interest"] = interest
    return signals, sections, notes


def _embedding_signals(reference_dirs: list[Path], reference: list[dict], current_dir: Path, current: dict,
                       cfg: DriftConfig, encoder: embeddings.TextEncoder,
                       cache_dir: Path | None) -> tuple[dict, list[ev.Section], list[str]]:
    """Domain-classifier AUC per text kind, on frozen-encoder vectors (embeddings.py); each batch encoded once."""
    ref_parts = [embeddings.batch_embeddings(d, t, encoder, cfg, cache_dir) for d, t in zip(reference_dirs, reference)]
    cur_vecs, _ = embeddings.batch_embeddings(current_dir, current, encoder, cfg, cache_dir)
    notes = [f"embeddings: {sum(hit for _, hit in ref_parts)}/{len(ref_parts)} reference batch(es) read from cache"]
    results: dict[str, dict] = {}
    sections = []
    for name in cfg.embedding_kinds:
        ref_vecs = embeddings.stack([vecs[name] for vecs, _ in ref_parts])
        n_ref, n_cur = len(ref_vecs), len(cur_vecs[name])
        if min(n_ref, n_cur) < MIN_TEXTS:
            notes.append(f"{EMBEDDING_LABELS[name]} embeddings not checked: {n_ref} reference / {n_cur} current texts")
            continue
        auc, widgets = ev.embedding_drift(name, ref_vecs, cur_vecs[name], cfg.pca_components, cfg.embedding_plots)
        results[name] = {"auc": auc, "n_reference": n_ref, "n_current": n_cur}
        sections.append(ev.Section(f"{EMBEDDING_LABELS[name].capitalize()} embeddings (domain classifier)", widgets))
    return {"embeddings": results}, sections, notes


def _champion_signals(reference: list[dict], current: dict, reference_dirs: list[Path], cfg: DriftConfig,
                      champion_dir: Path, evaluate: EvaluateConfig) -> tuple[dict, list[ev.Section], list[str]]:
    """Prediction drift (the champion's score distribution) and performance drift (its NDCG on the new batch)."""
    from liveloop.evaluation.protocol import ProtocolError

    notes: list[str] = []
    signals: dict = {}
    sections = []
    model = model_signals.load_model(champion_dir)
    ref_side = model_signals.side_texts(reference, cfg, cfg.seed)
    cur_side = model_signals.side_texts([current], cfg, cfg.seed + 10)
    if min(len(ref_side.user_ids), len(cur_side.user_ids)) >= MIN_TEXTS:
        ref_scores = model_signals.score_summary(model, ref_side)
        cur_scores = model_signals.score_summary(model, cur_side)
        limits = {c: cfg.thresholds.prediction_drift for c in ref_scores.columns}
        results, widgets = ev.column_drift(ref_scores, cur_scores, limits, frozenset(limits))
        signals["prediction"] = {c: r["score"] for c, r in results.items()}
        sections.append(ev.Section("Champion score distribution (prediction drift)", widgets))
    try:
        signals["performance"] = model_signals.performance(model, reference_dirs, current, cfg, evaluate)
        if not signals["performance"]:
            notes.append("performance drift not checked: fewer than 2 reference batches")
    except (ProtocolError, ValueError) as exc:
        notes.append(f"performance drift not checked: {exc}")
    return signals, sections, notes


def _signal_table(signals: dict, cfg: DriftConfig) -> list[list[str]]:
    """Rows for the report: every measured signal next to its threshold (the same rules as policy.decide)."""
    t = cfg.thresholds
    rows = [["share of drifted tabular columns", f"{signals['tabular']['drifted_share']:.2f}", f"{t.drifted_share:g}",
             str(signals["tabular"]["drifted_share"] >= t.drifted_share)]]
    for col, r in signals["tabular"]["columns"].items():
        rows.append([f"{col} ({r['method']})", f"{r['score']:.3f}", f"{r['threshold']:g}", str(r["drift"])])
    for col, share in signals["new_values"].items():
        limit = t.new_value_share.get(col)
        rows.append([f"events with a new {col}", f"{share:.3f}", str(limit), str(limit is not None and share >= limit)])
    if "repriced_share" in signals:
        rows.append(["events on repriced items", f"{signals['repriced_share']:.3f}", f"{t.repriced_share:g}",
                     str(signals["repriced_share"] >= t.repriced_share)])
    interest = signals.get("interest")
    if interest is not None:
        drop = interest["relative_drop"]
        rows.append([f"returning users' category match drop ({interest['current']:.3f} vs {interest['reference']:.3f})",
                     "n/a" if drop is None else f"{drop:.3f}", f"{t.interest_drop:g}",
                     str(drop is not None and drop >= t.interest_drop)])
    for name, r in signals.get("embeddings", {}).items():
        limit = t.embedding_auc.get(name)
        rows.append([f"{name} embeddings ROC AUC", f"{r['auc']:.3f}", str(limit), str(limit is not None and r["auc"] >= limit)])
    for name, score in signals.get("prediction", {}).items():
        rows.append([f"champion {name} (wasserstein)", f"{score:.3f}", f"{t.prediction_drift:g}",
                     str(score >= t.prediction_drift)])
    for metric, r in signals.get("performance", {}).items():
        drop = r["relative_drop"]
        rows.append([f"champion {metric} relative drop ({r['current']:.3f} vs {r['baseline']:.3f})",
                     "n/a" if drop is None else f"{drop:.3f}", f"{t.ndcg_drop:g}", str(drop is not None and drop >= t.ndcg_drop)])
    return rows


def check_drift(
    reference_dirs: list[Path],
    current_dir: Path,
    out_dir: Path,
    cfg: DriftConfig,
    champion_dir: Path | None = None,
    model_cfg: ModelConfig | None = None,
    cache_dir: Path | None = None,
    text_encoder: embeddings.TextEncoder | None = None,
    evaluate_cfg: EvaluateConfig | None = None,
) -> dict:
    """Measure every drift signal of `current_dir` against `reference_dirs`, apply the policy in `cfg.thresholds`,
    write `out_dir/drift_report.html` and `out_dir/drift.json`, and return the verdict
    `{"drift": bool, "signals": {...}, "reasons": [...], ...}`.

    Text embeddings come from the pretrained encoder named by `model_cfg` (cached per batch under `cache_dir`, default
    `out_dir/../embedding-cache`; pass `text_encoder` to reuse one loaded encoder across checks). The champion-based signals (prediction / performance drift) run only with a
    champion and `cfg.champion_signals`; performance drift tracks `evaluate_cfg.ndcg_metric`, the gate's metric."""
    started = time.perf_counter()
    reference_dirs = [Path(d) for d in reference_dirs]
    current_dir, out_dir = Path(current_dir), Path(out_dir)
    _check_inputs(reference_dirs, current_dir, cfg)
    reference = [read_batch(d) for d in reference_dirs]
    current = read_batch(current_dir)
    if current["events"].empty:
        raise DriftInputError(f"current batch {current_dir} has no events")
    if all(t["events"].empty for t in reference):
        raise DriftInputError(f"reference batches {[str(d) for d in reference_dirs]} hold no events")

    signals, sections, notes = _tabular(reference, current, cfg)
    encoder = text_encoder or embeddings.TextEncoder((model_cfg or ModelConfig()).encoder, cfg.embedding_max_length)
    parts = [_embedding_signals(reference_dirs, reference, current_dir, current, cfg, encoder,
                                out_dir.parent / EMBEDDING_CACHE if cache_dir is None else cache_dir)]
    if champion_dir is None:
        notes.append("no champion: prediction and performance drift not checked")
    elif not cfg.champion_signals:
        notes.append("prediction and performance drift off (drift.champion_signals: false)")
    else:
        parts.append(_champion_signals(reference, current, reference_dirs, cfg, Path(champion_dir),
                                       evaluate_cfg or EvaluateConfig()))
    for part_signals, part_sections, part_notes in parts:
        signals.update(part_signals)
        sections += part_sections
        notes += part_notes
    drift, reasons = decide(signals, cfg.thresholds)

    out_dir.mkdir(parents=True, exist_ok=True)
    verdict = {
        "drift": drift,
        "signals": signals,
        "reasons": reasons,
        "notes": notes,
        "reference": [str(d) for d in reference_dirs],
        "current": str(current_dir),
        "champion": None if champion_dir is None else str(champion_dir),
        "report_html": str(out_dir / REPORT_HTML),
        "seconds": round(time.perf_counter() - started, 2),
    }
    summary = [f"**Drift: {'yes' if drift else 'no'}**", ""] + [f"- {r}" for r in reasons or ["no signal crossed its threshold"]]
    summary += [f"- note: {n}" for n in notes]
    ev.write_report(out_dir / REPORT_HTML, f"Drift check of {current_dir.name} against {len(reference_dirs)} reference batch(es)",
                    summary, _signal_table(signals, cfg), sections)
    (out_dir / VERDICT_JSON).write_text(json.dumps(verdict, indent=2))
    log.info("drift check of %s: %s%s", current_dir.name, "drift" if drift else "no drift",
             "".join(f"; {r}" for r in reasons))
    return verdict
