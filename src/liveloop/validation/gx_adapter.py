"""Great Expectations behind one function: run a table's JSON suite on a DataFrame, get plain-words problems back.

expectations/<table>.json is the contract; each expectation carries `meta.problem`, a phrase (formatted with the
batch's parameters) that turns a GX result into a sentence naming table, column and what is wrong. Batch-dependent
values (day bounds, "now", known ids, caps) are GX suite parameters ({"$PARAMETER": name}) supplied per call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SUITES_DIR = Path(__file__).resolve().parents[3] / "expectations"
_EXAMPLES = 3


@dataclass
class SuiteOutcome:
    """What one table's suite found: failures (plain words) and checks that could not run (with why)."""

    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_suite(table: str):
    """The committed suite for a table, reloaded as a GX ExpectationSuite."""
    import great_expectations as gx

    path = SUITES_DIR / f"{table}.json"
    if not path.exists():
        raise FileNotFoundError(f"expectation suite for table {table!r} not found at {path}")
    return gx.ExpectationSuite(**json.loads(path.read_text()))


def _suite_parameter_names(kwargs: dict) -> set[str]:
    """Names of the {"$PARAMETER": name} placeholders an expectation's kwargs use."""
    return {v["$PARAMETER"] for v in kwargs.values() if isinstance(v, dict) and "$PARAMETER" in v}


def run_suites(
    tables: dict[str, pd.DataFrame], parameters: dict[str, Any], unavailable: dict[str, str], wording: dict[str, str]
) -> SuiteOutcome:
    """Validate each table against its suite, all in one fresh ephemeral GX context (no state outlives the call).

    `unavailable` maps parameter names that could not be computed to the reason; expectations needing them are
    reported as skipped instead of run. `wording` fills the {placeholders} in each expectation's meta.problem.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("liveloop-batch")
    outcome = SuiteOutcome()
    for table, df in tables.items():
        runnable = []
        for exp in load_suite(table).expectations:
            missing = _suite_parameter_names(exp.configuration.kwargs) & unavailable.keys()
            if missing:
                reasons = "; ".join(sorted({unavailable[m] for m in missing}))
                outcome.skipped.append(f"{_label(table, exp.configuration.kwargs)}: not checked ({reasons})")
            else:
                runnable.append(exp)
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": df}
        )
        suite = gx.ExpectationSuite(name=table, expectations=runnable)
        try:
            results = batch.validate(suite, expectation_parameters=parameters, result_format="BASIC").results
        except Exception as exc:  # noqa: BLE001 - data GX chokes on is a rejected batch, not a crashed gate
            outcome.failures.append(f"{table}: could not be validated ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        _explain_failures(table, df, [r for r in results if not r.success], wording, outcome)
    return outcome


def _explain_failures(table: str, df: pd.DataFrame, failed: list, wording: dict[str, str], outcome: SuiteOutcome):
    broken_columns = _columns_already_explained(failed)
    for r in failed:
        config = r.expectation_config
        error = _exception_message(r.exception_info)
        if error is None:
            outcome.failures.append(_describe(table, config, r.result, df, wording))
        elif not _depends_on(config.kwargs, broken_columns):  # a missing/mistyped column's follow-on errors add nothing
            outcome.failures.append(f"{_label(table, config.kwargs)}: could not be checked ({error})")


def _label(table: str, kwargs: dict) -> str:
    if "column" in kwargs:
        return f"{table}.{kwargs['column']}"
    if "column_A" in kwargs:
        return f"{table}.{kwargs['column_A']}/{kwargs['column_B']}"
    return table


def _depends_on(kwargs: dict, columns: set[str]) -> bool:
    """Whether an expectation reads any of these columns (directly or in its row condition)."""
    direct = {kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs}
    condition = str(kwargs.get("row_condition") or "")
    return bool(direct & columns) or any(col in condition for col in columns)


def _columns_already_explained(failed) -> set[str]:
    """Columns reported missing or of the wrong type: their follow-on errors are noise."""
    broken: set[str] = set()
    for r in failed:
        if r.expectation_config.type == "expect_table_columns_to_match_set":
            broken |= set(r.result.get("details", {}).get("mismatched", {}).get("missing", []))
        elif r.expectation_config.type == "expect_column_values_to_be_of_type":
            broken.add(r.expectation_config.kwargs["column"])
    return broken


def _exception_message(info: dict | None) -> str | None:
    """GX nests exception info per metric; return the first message, or None when the expectation ran."""
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")).splitlines()[0] if info["raised_exception"] else None
    for value in info.values():
        message = _exception_message(value) if isinstance(value, dict) else None
        if message:
            return message
    return None


def _describe(table: str, config, result: dict, df: pd.DataFrame, wording: dict[str, str]) -> str:
    kwargs = config.kwargs
    problem = config.meta.get("problem", config.type.replace("_", " ")).format_map(wording)
    label = _label(table, kwargs)
    if config.type == "expect_table_columns_to_match_set":
        missing = result.get("details", {}).get("mismatched", {}).get("missing", [])
        return f"{label}: {problem}: {', '.join(missing)}"
    if config.type == "expect_table_row_count_to_be_between":
        return f"{label}: has {result.get('observed_value')} rows but {problem}"
    if config.type == "expect_column_values_to_be_of_type":
        return f"{label}: {problem} but holds {_describe_values(df[kwargs['column']])}"
    count = result.get("unexpected_count", 0)
    examples = list(dict.fromkeys(_show(v) for v in result.get("partial_unexpected_list", []) if v is not None))
    shown = f" (e.g. {', '.join(examples[:_EXAMPLES])})" if examples else ""
    return f"{label}: {count} of {result.get('element_count', '?')} rows {problem}{shown}"


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + " vs ".join(_show(v) for v in value) + ")"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return repr(text[:60] + "...") if len(text) > 60 else repr(text)


def _describe_values(series: pd.Series) -> str:
    """What a column really holds, in words a data engineer can act on (bytes that are not UTF-8 called out)."""
    if series.dtype != object:
        if pd.api.types.is_datetime64_any_dtype(series) and series.notna().any():  # e.g. [us]: outside ns range
            return f"{series.dtype} values (from {series.min()} to {series.max()})"
        return f"{series.dtype} values"
    values = series.dropna()
    if values.empty:
        return "only nulls with no type"
    odd = next((v for v in values if not isinstance(v, str)), values.iloc[0])
    if isinstance(odd, bytes):
        try:
            odd.decode("utf-8")
        except UnicodeDecodeError:
            return f"raw bytes that are not valid UTF-8 text (e.g. {odd[:40]!r})"
        return f"raw bytes instead of text (e.g. {odd[:40]!r})"
    return f"{type(odd).__name__} values (e.g. {str(odd)[:40]!r})"
