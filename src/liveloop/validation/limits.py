"""Value ranges shared by the gate (as GX suite parameters) and the service's request bodies.

One place, so whatever /feedback or /items accepts also passes the gate when the feedback log becomes the next
batch: an event the API took must never quarantine a whole day. The bounds catch unit and sentinel mistakes
(epoch-0 dates, quantities in the millions), not business rules.
"""

from __future__ import annotations

import pandas as pd

MAX_QUANTITY = 100_000.0  # units in one event; Online Retail's largest (a bulk order and its cancellation) is 80,995
MAX_PRICE = 1_000_000.0  # one unit's price
EARLIEST = pd.Timestamp("1970-01-01")  # anything before is an epoch-0 or unit mistake
LATEST = pd.Timestamp("2262-04-10")  # the last whole day pandas holds in datetime64[ns]


def time_problem(value: pd.Timestamp) -> str | None:
    """Why a (tz-naive UTC) time is out of range, or None when it is fine."""
    if value < EARLIEST or value >= LATEST:
        return f"{value.isoformat()} is outside {EARLIEST.date()}..{LATEST.date()}"
    return None
