"""Monitoring over time: every batch becomes one snapshot in a local Evidently workspace (one project, "liveloop"),
with a dashboard of its drift signals against their thresholds, champion / candidate / best-baseline quality, CTR AUC,
promotions and rejections, and feedback volume. `make monitor` runs `evidently ui` on that workspace.

A batch's numbers are already computed by the loop (check_drift, evaluate_model, the promotion decision), so they are
recorded as a one-row Evidently dataset with one MeanValue metric per number: each number is then a metric series the
dashboard panels select by column name, on the batch's day as the snapshot timestamp.
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime, time
from pathlib import Path

from liveloop.config import DriftThresholds
from liveloop.data.batches import batch_day

PROJECT = "liveloop"
WORKSPACE_DIR = "evidently"  # under the workspace's state folder (.liveloop/evidently)
DECISIONS = ("promoted", "rejected", "no-retrain", "quarantined")  # the loop's per-batch status
CTR = "auc"
CUTOFF_NAMES = {"ndcg": "NDCG", "hr": "HR", "recall": "Recall"}  # "<name>@<k>" metric -> panel label
ROLES = {"champion": "champion", "candidate": "candidate", "best_baseline": "best baseline"}
MEAN_VALUE = "evidently:metric_v2:MeanValue"
TABS = ("Drift", "Quality", "Loop")


class DashboardInputError(ValueError):
    """A batch record with a bad day, an unknown decision or a non-numeric metric."""


def workspace_dir(state: str | Path) -> Path:
    """The Evidently workspace inside a liveloop state folder (what `make monitor` serves)."""
    return Path(state) / WORKSPACE_DIR


def drift_points(signals: dict, thresholds: DriftThresholds) -> list[tuple[str, str, float, float | None]]:
    """(key, label, measured value, threshold) for every drift signal check_drift measured; the threshold is the one
    policy.decide applies (None where the policy has none)."""
    t = thresholds
    points = []
    tabular = signals.get("tabular") or {}
    if tabular.get("drifted_share") is not None:
        points.append(("drifted_share", "share of drifted tabular columns", tabular["drifted_share"], t.drifted_share))
    for column, info in (tabular.get("columns") or {}).items():
        points.append((f"column_{column}", f"{column} ({info['method']})", info["score"], t.column_drift.get(column)))
    for column, share in (signals.get("new_values") or {}).items():
        points.append((f"new_{column}", f"events with a new {column}", share, t.new_value_share.get(column)))
    if signals.get("repriced_share") is not None:
        points.append(("repriced_share", "events on repriced items", signals["repriced_share"], t.repriced_share))
    interest = signals.get("interest") or {}
    if interest.get("relative_drop") is not None:
        points.append(("interest_drop", "returning users' category match drop", interest["relative_drop"],
                       t.interest_drop))
    for name, info in (signals.get("embeddings") or {}).items():
        points.append((f"embedding_{name}", f"{name} embeddings ROC AUC", info["auc"], t.embedding_auc.get(name)))
    for name, score in (signals.get("prediction") or {}).items():
        points.append((f"prediction_{name}", f"champion {name} (wasserstein)", score, t.prediction_drift))
    for metric, info in (signals.get("performance") or {}).items():
        if info.get("relative_drop") is not None:
            points.append((f"performance_{metric}", f"champion {metric} relative drop", info["relative_drop"],
                           t.ndcg_drop))
    return points


def metric_label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{CUTOFF_NAMES.get(name, name)}@{k}" if k else metric


def batch_values(drift: dict | None, thresholds: DriftThresholds, candidate: dict | None, champion: dict | None,
                 baselines: dict | None, decision: str, feedback_events: int | None,
                 quality: tuple[str, ...]) -> tuple[dict[str, float], dict]:
    """The numbers of one batch as {series column: value} (missing numbers left out) and the panel layout they need
    as {tab: [(title, [(legend, column)], plot)]}; `quality` names the ranking metrics plotted per role."""
    from liveloop.evaluation.evaluate import best_baseline

    if decision not in DECISIONS:
        raise DashboardInputError(f"decision must be one of {list(DECISIONS)}, got {decision!r}")
    values: dict[str, float] = {}
    layout: dict[str, list] = {tab: [] for tab in TABS}
    for key, label, value, limit in drift_points((drift or {}).get("signals") or {}, thresholds):
        values[f"drift.{key}"] = value
        series = [("measured", f"drift.{key}")]
        if limit is not None:
            values[f"threshold.{key}"] = limit
            series.append(("threshold", f"threshold.{key}"))
        layout["Drift"].append((label, series, "line"))
    models = {"champion": champion, "candidate": candidate}
    for metric in quality:
        best = best_baseline(baselines, metric)
        models_metric = {role: (m or {}).get(metric) for role, m in models.items()}
        models_metric["best_baseline"] = None if best is None else best[1]
        for role, value in models_metric.items():
            if value is not None:
                values[f"{role}.{metric}"] = value
        layout["Quality"].append((f"{metric_label(metric)} per day", [(ROLES[r], f"{r}.{metric}") for r in ROLES], "line"))
    for role, m in models.items():
        if (m or {}).get(CTR) is not None:
            values[f"{role}.ctr_auc"] = m[CTR]
    layout["Quality"].append(("CTR AUC per day", [(r, f"{r}.ctr_auc") for r in models], "line"))
    values["decision.promoted"] = float(decision == "promoted")
    values["decision.rejected"] = float(decision == "rejected")
    if drift is not None:
        values["drift.detected"] = float(bool(drift.get("drift")))
    layout["Loop"].append(("Promotions and rejections", [("promoted", "decision.promoted"),
                                                         ("rejected", "decision.rejected")], "bar"))
    layout["Loop"].append(("Batches with drift", [("drift", "drift.detected")], "bar"))
    if feedback_events is not None:
        values["feedback.events"] = feedback_events
    layout["Loop"].append(("Feedback volume (events per batch)", [("events", "feedback.events")], "bar"))
    for column, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise DashboardInputError(f"{column} must be a finite number, got {value!r}")
    return {c: float(v) for c, v in values.items()}, layout


def _panel(title: str, series: list[tuple[str, str]], plot: str):
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    metrics = [PanelMetric(legend=legend, metric=MEAN_VALUE, metric_labels={"column": column}) for legend, column in series]
    make = line_plot_panel if plot == "line" else bar_plot_panel
    return make(title=title, values=metrics, size="half")


def _project(ws):
    found = ws.search_project(PROJECT)
    if found:
        return found[0]
    project = ws.create_project(PROJECT, description="liveloop: one snapshot per batch (drift, quality, decisions)")
    for tab in TABS:
        project.dashboard.add_tab(tab)
    return project


def record_batch(workspace: str | Path, day: str, *, drift: dict | None, thresholds: DriftThresholds,
                 candidate: dict | None = None, champion: dict | None = None, baselines: dict | None = None,
                 decision: str, feedback_events: int | None = None, quality: tuple[str, ...]) -> str:
    """Add one batch to the Evidently workspace as a snapshot timestamped with its day; returns the snapshot id.

    `drift` is check_drift's verdict (or None when no check ran), `thresholds` the policy it was judged by;
    `candidate` / `champion` are evaluate_model's metrics of the "model" entry on the new batch, `baselines` all its
    models (the best of the real baselines is plotted); `decision` is the loop's status for the batch;
    `feedback_events` the number of events the batch holds; `quality` the ranking metrics plotted (the loop's
    headline and recall, from evaluate.ks). Panels for signals seen the first time are added."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue
    from evidently.ui.workspace import Workspace

    try:
        when = datetime.combine(batch_day(day), time())
    except ValueError as exc:
        raise DashboardInputError(str(exc)) from None
    values, layout = batch_values(drift, thresholds, candidate, champion, baselines, decision, feedback_events, quality)
    Path(workspace).mkdir(parents=True, exist_ok=True)
    ws = Workspace(str(workspace))
    project = _project(ws)
    columns = list(values)
    row = Dataset.from_pandas(pd.DataFrame([values]), data_definition=DataDefinition(numerical_columns=columns))
    snapshot = Report([MeanValue(column=c) for c in columns]).run(
        row, None, timestamp=when, tags=["batch"], metadata={"batch": str(day), "decision": decision},
        name=f"batch {day}")
    ref = ws.add_run(project.id, snapshot)
    have = {p.title for p in ws.get_dashboard(project.id).panels}
    for tab, panels in layout.items():
        for title, series, plot in panels:
            if title not in have:
                project.dashboard.add_panel(_panel(title, series, plot), tab=tab)
                have.add(title)
    return str(ref.id)

