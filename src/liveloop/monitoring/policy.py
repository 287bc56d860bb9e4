"""The retrain policy: thresholds per signal (params.yaml `drift.thresholds`) turn measured signals into a verdict.

Pure and cheap, so it is unit-tested without Evidently or a model. Every crossing gives one reason in plain words
naming the signal, the measured number and the threshold, so the log says why a retrain was triggered.
"""

from __future__ import annotations

from liveloop.config import DriftThresholds

EMBEDDING_LABELS = {"items": "item text", "users": "user behaviour text", "comments": "comment text"}


def decide(signals: dict, thresholds: DriftThresholds) -> tuple[bool, list[str]]:
    """(drift?, reasons) for the signals measured by `check_drift`; a missing signal is simply not judged."""
    reasons: list[str] = []
    tabular = signals.get("tabular") or {}
    share = tabular.get("drifted_share")
    if share is not None and share >= thresholds.drifted_share:
        reasons.append(f"{share:.0%} of tabular columns drifted (policy: >= {thresholds.drifted_share:.0%})")
    for column, info in (tabular.get("columns") or {}).items():
        limit = thresholds.column_drift.get(column)
        if limit is not None and info["score"] >= limit:
            reasons.append(f"{column} drifted: {info['method']} distance {info['score']:.3f} >= {limit:g}")
    for column, share_new in (signals.get("new_values") or {}).items():
        limit = thresholds.new_value_share.get(column)
        if limit is not None and share_new >= limit:
            reasons.append(f"{share_new:.1%} of events have a {column} unseen in the reference (policy: >= {limit:.1%})")
    repriced = signals.get("repriced_share")
    if repriced is not None and repriced >= thresholds.repriced_share:
        reasons.append(f"{repriced:.1%} of events are on items repriced since the reference "
                       f"(policy: >= {thresholds.repriced_share:.1%})")
    interest = signals.get("interest") or {}
    if interest.get("relative_drop") is not None and interest["relative_drop"] >= thresholds.interest_drop:
        reasons.append(
            f"returning users moved away from their categories: category match {interest['current']:.3f} vs "
            f"{interest['reference']:.3f} in the reference, a {interest['relative_drop']:.0%} drop "
            f"(policy: >= {thresholds.interest_drop:.0%})"
        )
    for name, info in (signals.get("embeddings") or {}).items():
        limit = thresholds.embedding_auc.get(name)
        if limit is not None and info.get("auc") is not None and info["auc"] >= limit:
            label = EMBEDDING_LABELS.get(name, name)
            reasons.append(f"{label} embeddings drifted: domain classifier ROC AUC {info['auc']:.3f} >= {limit:g}")
    for name, score in (signals.get("prediction") or {}).items():
        if score >= thresholds.prediction_drift:
            reasons.append(
                f"champion {name.replace('_', ' ')} distribution drifted: wasserstein distance {score:.3f} "
                f">= {thresholds.prediction_drift:g}"
            )
    for metric, info in (signals.get("performance") or {}).items():
        drop = info.get("relative_drop")
        if drop is not None and drop >= thresholds.ndcg_drop:
            reasons.append(
                f"champion {metric} fell {drop:.0%} ({info['current']:.3f} on this batch vs {info['baseline']:.3f} "
                f"{info['baseline_source']}; policy: >= {thresholds.ndcg_drop:.0%})"
            )
    return bool(reasons), reasons
