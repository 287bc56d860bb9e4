"""Metrics, baselines, evaluation protocols, the benchmark and the promotion gate.

Public entry points load on first use, so importing the package does not import torch or scipy.
"""

_LAZY = {
    "evaluate_model": "liveloop.evaluation.evaluate",
    "run_benchmark": "liveloop.evaluation.benchmark",
    "promotion_decision": "liveloop.evaluation.promotion",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'liveloop.evaluation' has no attribute {name!r}")
