"""Thin adapter over Evidently 0.7: column drift, embedding drift, and one combined HTML report per batch.

Results are read from `snapshot.dict()` by metric type and column name, never by position. Evidently is imported
inside the functions so importing liveloop.monitoring stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC_METHOD = "wasserstein"  # normed by the reference std: scale-free, and a distance (higher = more drift)
CATEGORICAL_METHOD = "jensenshannon"


@dataclass
class Section:
    """One part of the combined report: a title and the Evidently widgets of one snapshot."""

    title: str
    widgets: list = field(default_factory=list)


def column_drift(
    reference: pd.DataFrame, current: pd.DataFrame, thresholds: dict[str, float], numeric: set[str] | frozenset[str]
) -> tuple[dict, list]:
    """Drift score per column (Wasserstein for numbers, Jensen-Shannon for categories) and the report widgets.
    Columns are exactly the keys of `thresholds`."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(thresholds)
    num = [c for c in columns if c in numeric]
    cat = [c for c in columns if c not in numeric]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    preset = DataDriftPreset(
        columns=columns,
        num_method=NUMERIC_METHOD,
        cat_method=CATEGORICAL_METHOD,
        per_column_threshold=dict(thresholds),
    )
    snapshot = Report([preset], include_tests=False).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    results: dict[str, dict] = {}
    for metric in snapshot.dict()["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith(":ValueDrift"):
            score = float(value)
            column = config["column"]
            results[column] = {
                "score": score,
                "method": config["method"],
                "threshold": float(config["threshold"]),
                "drift": bool(score >= config["threshold"]),
            }
    missing = [c for c in columns if c not in results]
    if missing:
        raise RuntimeError(f"Evidently returned no drift result for columns {missing}")
    return results, snapshot._widgets


def embedding_drift(
    name: str, reference: np.ndarray, current: np.ndarray, pca_components: int, plot: bool
) -> tuple[float, list]:
    """ROC AUC of Evidently's domain classifier ("model" method) telling reference from current vectors
    (0.5 = same distribution). With `plot`, the full EmbeddingsDrift metric runs and adds its t-SNE plot to the
    report; that plot costs ~10-30 s on 2 cores, so by default the classifier is called directly (same number)."""
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    if len(reference) < 2 or len(current) < 2:
        raise ValueError(f"{name}: embedding drift needs at least 2 vectors per side, got {len(reference)} and {len(current)}")
    columns = [f"{name}_{i}" for i in range(reference.shape[1])]
    method = model(threshold=0.5, pca_components=pca_components or None)
    ref_frame, cur_frame = pd.DataFrame(reference, columns=columns), pd.DataFrame(current, columns=columns)
    if not plot:
        auc, _, _ = method(cur_frame, ref_frame)
        return float(auc), []

    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    definition = DataDefinition(embeddings={name: columns})
    snapshot = Report([EmbeddingsDrift(embeddings_name=name, drift_method=method)], include_tests=False).run(
        current_data=Dataset.from_pandas(cur_frame, data_definition=definition),
        reference_data=Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    for metric in snapshot.dict()["metrics"]:
        if metric["config"]["type"].endswith(":EmbeddingsDrift") and metric["config"]["embeddings_name"] == name:
            return float(metric["value"]), snapshot._widgets
    raise RuntimeError(f"Evidently returned no embedding drift result for {name}")


def write_report(path: Path, title: str, summary: list[str], table: list[list[str]], sections: list[Section]) -> Path:
    """One self-contained HTML file: verdict and signal table on top, then every Evidently section."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget, header_text, table_data, text_widget

    widgets = [
        header_text(label=title),
        text_widget(title="Verdict", text="\n".join(summary)),
        table_data(title="Signals and the policy", column_names=["signal", "value", "threshold", "crossed"], data=table),
    ]
    widgets += [group_widget(title=s.title, widgets=s.widgets) for s in sections if s.widgets]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_widgets(widgets), encoding="utf-8")
    return path
