"""Property-based fuzz of the gate's input tables (hypothesis): hostile numbers and times written into a good batch.

Each example overwrites a few cells of the corpus' good batch with drawn values (non-finite, zero, huge, negative
floats; times from 1970 to 2262 and a column stored outside the ns range) and writes the tables as a broken producer
would. Properties: the gate never raises; every drawn value the contract forbids is reported under its table.column;
a batch whose drawn values are all allowed is accepted. The oracle below is plain Python, written from docs/data.md,
not from the suites.
"""

from __future__ import annotations

import math
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from validation_corpus import DAY, good_tables, write_good_batch

from liveloop.config import ValidateConfig
from liveloop.validation import validate_batch
from liveloop.validation.limits import EARLIEST, MAX_PRICE, MAX_QUANTITY

NOW = datetime(2026, 1, 6, 12, 0)
DAY_START = pd.Timestamp(DAY)
DAY_END = DAY_START + pd.Timedelta(days=1)
ROWS = {table: len(frame) for table, frame in good_tables().items()}

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324, MAX_QUANTITY, -MAX_QUANTITY, MAX_QUANTITY + 1, MAX_PRICE,
                     MAX_PRICE * (1 + 1e-9), -MAX_PRICE, float("inf"), float("-inf"), float("nan")]),
)
NEAR_DAY = st.integers(-3 * 86_400, 4 * 86_400).map(lambda s: DAY_START + pd.Timedelta(seconds=s))
TIMES = st.one_of(NEAR_DAY, st.datetimes(datetime(1970, 1, 1), datetime(2262, 4, 9)).map(pd.Timestamp),
                  st.sampled_from([pd.Timestamp("1969-12-31 23:59:59"), EARLIEST, pd.Timestamp(0)]))


def _allowed(table: str, column: str, value) -> bool:
    """The contract for the fuzzed numeric and time fields (docs/data.md), as plain Python."""
    if column == "quantity":
        return value is None or math.isnan(value) or (math.isfinite(value) and value != 0 and abs(value) <= MAX_QUANTITY)
    if column == "price":
        return value is None or math.isnan(value) or (math.isfinite(value) and 0 < value <= MAX_PRICE)
    if column == "ts":
        return DAY_START <= value < DAY_END
    if column == "first_seen":
        return EARLIEST <= value < DAY_END
    if column in ("start", "end"):
        return DAY_START - pd.Timedelta(days=1) <= value < DAY_END + pd.Timedelta(days=1)
    raise AssertionError(column)


CELLS = st.one_of(
    st.tuples(st.just("events"), st.sampled_from(["quantity", "price"]), st.integers(0, ROWS["events"] - 1), FLOATS),
    st.tuples(st.just("items"), st.just("price"), st.integers(0, ROWS["items"] - 1), FLOATS),
    st.tuples(st.just("events"), st.just("ts"), st.integers(0, ROWS["events"] - 1), TIMES),
    st.tuples(st.just("items"), st.just("first_seen"), st.integers(0, ROWS["items"] - 1), TIMES),
    st.tuples(st.just("streams"), st.sampled_from(["start", "end"]), st.just(0), NEAR_DAY),
)


# no shrinking: at ~3 s per GX run it would take minutes; the failing example is printed as drawn
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(cells=st.lists(CELLS, min_size=1, max_size=3, unique_by=lambda c: c[:3]),
       beyond_ns=st.sampled_from([None, "events.ts", "items.first_seen", "streams.end"]))
def test_gate_names_every_forbidden_number_and_time(cells, beyond_ns):
    with tempfile.TemporaryDirectory() as tmp:
        batch = write_good_batch(Path(tmp))
        tables = {t: pd.read_parquet(batch / f"{t}.parquet") for t in {c[0] for c in cells} | {"streams"}}
        for table, column, row, value in cells:
            tables[table].loc[row, column] = value
        if beyond_ns:  # one cell past 2262: pandas can only hold the column as datetime64[us]
            table, column = beyond_ns.split(".")
            frame = tables.setdefault(table, pd.read_parquet(batch / f"{table}.parquet"))
            frame[column] = np.array(frame[column].tolist()[:-1] + [datetime(3000, 1, 1)], dtype="datetime64[us]")
        streams = tables["streams"]
        for table, frame in tables.items():
            frame.to_parquet(batch / f"{table}.parquet", index=False)
        report = validate_batch(batch, ValidateConfig(), now=NOW)

    text = "\n".join(report.failures)
    forbidden = {f"{t}.{c}" for t, c, _, v in cells if not _allowed(t, c, v)}
    if (streams["end"] < streams["start"]).any():
        forbidden.add("streams.end/start")
    if beyond_ns:  # GX's type check lets [us] through; the range checks name the column
        forbidden.add(beyond_ns)
    for label in forbidden:
        assert f"{label}:" in text, f"{label} not reported:\n{text}"
    if not forbidden:
        assert report.ok, text
    else:
        assert not report.ok
    assert not report.skipped, report.skipped  # every check ran: nothing crashed into "not checked"
