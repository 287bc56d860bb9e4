"""Validation gate: Great Expectations suites in expectations/*.json decide accepted/ vs quarantine/."""

from liveloop.validation.gate import ALREADY_ACCEPTED, BatchInputError, GateResult, gate_batch, validate_batch
from liveloop.validation.report import ValidationReport

__all__ = ["ALREADY_ACCEPTED", "BatchInputError", "GateResult", "ValidationReport", "gate_batch", "validate_batch"]
