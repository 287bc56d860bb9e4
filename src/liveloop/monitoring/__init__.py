"""Drift monitoring: Evidently checks of each new batch against the reference window, and the retrain policy."""

from liveloop.monitoring.check import DriftInputError, check_drift

__all__ = ["DriftInputError", "check_drift"]
