"""The promotion gate: a candidate replaces the champion only if it is not worse beyond a tolerance on the new
batch AND on the replay set (so a model that learned today by forgetting yesterday is rejected)."""

from __future__ import annotations

import math


def _value(metrics: dict | None, name: str) -> float | None:
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(name)
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def promotion_decision(candidate: dict, champion: dict | None, cfg) -> tuple[bool, list[str]]:
    """(promote?, reasons in plain words). candidate/champion: {set name: {metric: value}}, e.g. {"new": ..., "replay": ...}.

    Each metric in cfg.metrics on each set in cfg.sets may drop by at most max(max_relative_drop x champion,
    max_absolute_drop). A set the champion was never measured on is skipped (said so); a set or metric the champion
    has but the candidate lacks blocks promotion, since "not measured" is not "not worse".
    """
    if not isinstance(candidate, dict):
        raise TypeError(f"candidate metrics must be a dict of evaluation sets, got {type(candidate).__name__}")
    if champion is None:
        return True, ["no champion yet: the first model is promoted"]
    if not isinstance(champion, dict):
        raise TypeError(f"champion metrics must be a dict of evaluation sets or None, got {type(champion).__name__}")
    promote, reasons = True, []
    for set_name in cfg.sets:
        if not champion.get(set_name):
            reasons.append(f"{set_name}: the champion has no metrics on this set, so it is not compared")
            continue
        if not candidate.get(set_name):
            promote = False
            reasons.append(f"{set_name}: the candidate was not evaluated on this set")
            continue
        for metric in cfg.metrics:
            old, new = _value(champion[set_name], metric), _value(candidate[set_name], metric)
            if old is None:
                reasons.append(f"{metric} on {set_name}: the champion has no value, so it is not compared")
                continue
            if new is None:
                promote = False
                reasons.append(f"{metric} on {set_name}: the candidate has no value (champion {old:.4f})")
                continue
            allowed = max(cfg.max_relative_drop * old, cfg.max_absolute_drop)
            if new < old - allowed:
                promote = False
                reasons.append(f"{metric} on {set_name} dropped from {old:.4f} to {new:.4f} "
                               f"(-{old - new:.4f}, more than the allowed {allowed:.4f})")
            elif new < old:
                reasons.append(f"{metric} on {set_name}: {new:.4f} vs {old:.4f}, a drop within the allowed {allowed:.4f}")
            else:
                reasons.append(f"{metric} on {set_name}: {new:.4f} vs {old:.4f}, not worse")
    return promote, reasons
