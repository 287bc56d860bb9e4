"""The promotion gate: a candidate replaces the champion only if it is not worse beyond a tolerance on the new
batch AND on the replay set (so a model that learned today by forgetting yesterday is rejected).

A day's holdout has a few dozen users, so one day's NDCG@10 moves by more than the tolerance from noise alone. Where
the evaluation carries per-user values (the same users scored by both models) the gate decides on the paired
per-user differences: it promotes only when a seeded bootstrap puts the one-sided `confidence` lower bound of
mean(candidate - champion) above -tolerance. Metrics without per-user values fall back to the point estimates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Check:
    """One (set, metric) comparison; `interval` is the bootstrap [lower, upper] bound of candidate - champion."""

    set: str
    metric: str
    passed: bool
    method: str  # "paired bootstrap" | "point estimate" | "not compared"
    reason: str
    candidate: float | None = None
    champion: float | None = None
    allowed: float | None = None
    diff: float | None = None
    interval: tuple[float, float] | None = None
    confidence: float | None = None
    users: int | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out


def _value(metrics: dict | None, name: str) -> float | None:
    if not isinstance(metrics, dict):
        return None
    value = metrics.get(name)
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def paired_difference_bounds(candidate, champion, confidence: float, samples: int, seed: int) -> tuple[float, float, float]:
    """(mean difference, lower, upper): one-sided `confidence` percentile bounds of mean(candidate - champion) over
    users resampled with replacement (both models keep each user's pair)."""
    cand, champ = np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)
    if cand.shape != champ.shape or cand.ndim != 1 or len(cand) == 0:
        raise ValueError(f"paired bootstrap needs two equal-length, non-empty per-user arrays "
                         f"(got {cand.shape} and {champ.shape})")
    diff = cand - champ
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    low, high = np.quantile(means, [1.0 - confidence, confidence])
    return float(diff.mean()), float(low), float(high)


def _compare(set_name: str, metric: str, old: float, new: float, pair, cfg, seed: int) -> Check:
    allowed = max(cfg.max_relative_drop * old, cfg.max_absolute_drop)
    base = dict(set=set_name, metric=metric, candidate=new, champion=old, allowed=allowed)
    if pair is None:
        if new < old - allowed:
            return Check(**base, passed=False, method="point estimate", diff=new - old,
                         reason=f"{metric} on {set_name} dropped from {old:.4f} to {new:.4f} "
                                f"(-{old - new:.4f}, more than the allowed {allowed:.4f}; point estimates)")
        word = "a drop within the allowed" if new < old else "not worse; allowed drop"
        return Check(**base, passed=True, method="point estimate", diff=new - old,
                     reason=f"{metric} on {set_name}: {new:.4f} vs {old:.4f}, {word} {allowed:.4f} (point estimates)")
    cand_users, champ_users = pair
    diff, low, high = paired_difference_bounds(cand_users, champ_users, cfg.confidence, cfg.bootstrap_samples, seed)
    passed = low >= -allowed
    verdict = ("a drop beyond it is ruled out" if passed
               else "a drop beyond it cannot be ruled out")
    return Check(**base, passed=passed, method="paired bootstrap", diff=diff, interval=(low, high),
                 confidence=cfg.confidence, users=len(cand_users),
                 reason=f"{metric} on {set_name}: {new:.4f} vs {old:.4f}, paired difference {diff:+.4f} "
                        f"({cfg.confidence:.0%} bounds [{low:+.4f}, {high:+.4f}] over {len(cand_users)} users); "
                        f"allowed drop {allowed:.4f}: {verdict}")


def gate(candidate: dict, champion: dict | None, cfg, per_user: dict | None = None,
         seed: int = 0) -> tuple[bool, list[Check]]:
    """(promote?, one Check per set and metric). candidate/champion: {set name: {metric: value}}, e.g. {"new": ...,
    "replay": ...}; per_user: {set name: {metric: (candidate values, champion values)}} for the same users in the
    same order.

    A set the champion was never measured on is skipped (said so); a set or metric the champion has but the candidate
    lacks blocks promotion, since "not measured" is not "not worse".
    """
    if not isinstance(candidate, dict):
        raise TypeError(f"candidate metrics must be a dict of evaluation sets, got {type(candidate).__name__}")
    if champion is None:
        return True, [Check(set="-", metric="-", passed=True, method="not compared",
                            reason="no champion yet: the first model is promoted")]
    if not isinstance(champion, dict):
        raise TypeError(f"champion metrics must be a dict of evaluation sets or None, got {type(champion).__name__}")
    checks: list[Check] = []
    for set_name in cfg.sets:
        if not champion.get(set_name):
            checks.append(Check(set=set_name, metric="-", passed=True, method="not compared",
                                reason=f"{set_name}: the champion has no metrics on this set, so it is not compared"))
            continue
        if not candidate.get(set_name):
            checks.append(Check(set=set_name, metric="-", passed=False, method="not compared",
                                reason=f"{set_name}: the candidate was not evaluated on this set"))
            continue
        for metric in cfg.metrics:
            old, new = _value(champion[set_name], metric), _value(candidate[set_name], metric)
            if old is None:
                checks.append(Check(set=set_name, metric=metric, passed=True, method="not compared", candidate=new,
                                    reason=f"{metric} on {set_name}: the champion has no value, so it is not compared"))
            elif new is None:
                checks.append(Check(set=set_name, metric=metric, passed=False, method="not compared", champion=old,
                                    reason=f"{metric} on {set_name}: the candidate has no value (champion {old:.4f})"))
            else:
                pair = ((per_user or {}).get(set_name) or {}).get(metric)
                checks.append(_compare(set_name, metric, old, new, pair, cfg, seed))
    return all(c.passed for c in checks), checks


def promotion_decision(candidate: dict, champion: dict | None, cfg, per_user: dict | None = None,
                       seed: int = 0) -> tuple[bool, list[str]]:
    """(promote?, reasons in plain words): `gate` with its checks as sentences."""
    promote, checks = gate(candidate, champion, cfg, per_user, seed)
    return promote, [c.reason for c in checks]
