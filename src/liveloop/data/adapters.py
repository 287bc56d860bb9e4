"""Importers: turn real interaction logs into the same daily batches the simulator writes.

`import_online_retail` maps the UCI Online Retail log (purchases only, no live rooms); `import_interactions` maps
any events file plus an items file with text, given the column names. Both write one self-contained batch per
calendar day (items and users that day references, empty streams, events with stream_id null) and return a
summary that counts every row they dropped and why, so nothing disappears silently.

Each day is written into a hidden staging folder and renamed into place, so a watcher never sees half a batch,
and an import refuses to overwrite a day that already exists.

Category rule (the Online Retail log has none; also used when a user's items file has no category column):
the title is upper-cased and split into letter-only words; words of fewer than 3 letters and the modifier words
in `_MODIFIER_WORDS` (colours, sizes, patterns, filler such as SET/OF/DESIGN) are skipped; plurals are
singularised (DOILIES->DOILY, BOXES->BOX, CANDLES->CANDLE). The last remaining word of a title is its head noun;
head nouns shared by at least `min_items` items form the vocabulary, and each item's category is the last word of
its title that is in the vocabulary (lower case, e.g. "holder", "bag", "mug"), else "other".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.data.batches import write_batch
from liveloop.data.schema import EVENT_TYPES, empty

ONLINE_RETAIL_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID")
SUPPORTED_EXTENSIONS = (".csv", ".parquet")
OTHER_CATEGORY = "other"
MIN_ITEMS_PER_CATEGORY = 5

_MODIFIER_WORDS = frozenset(
    # filler and quantities
    "SET SETS PACK PACKS AND WITH THE FOR ASSORTED DESIGN DESIGNS COLOUR COLOURS STYLE PCS PIECE PIECES NEW"
    # colours and finishes
    " RED PINK BLUE GREEN WHITE BLACK CREAM GOLD SILVER IVORY PURPLE YELLOW ORANGE BROWN GREY GRAY NATURAL LILAC"
    " TURQUOISE AMBER CLEAR MULTI MULTICOLOUR PASTEL BRIGHT TEAL FINISH ANTIQUE"
    # sizes
    " LARGE SMALL MEDIUM MINI JUMBO GIANT TINY LRG SML MED"
    # patterns and themes
    " RETROSPOT POLKADOT PAISLEY SPACEBOY WOODLAND LONDON CHRISTMAS VINTAGE FLORAL SPOTTY STRIPE STRIPES GINGHAM"
    " EDWARDIAN".split()
)


class DataImportError(ValueError):
    """The input files or the column mapping cannot be imported; the message says what is wrong and where."""


@dataclass(frozen=True)
class InteractionMapping:
    """Which columns of the user's events and items files hold what liveloop needs.

    user_col, time_col and event_type_col live in the events file; item_col in both files; text_cols and
    category_col in the items file (the first text column is the title, the others the description);
    price_col in the items file, or else in the events file (unit price paid; item price = median positive).
    """

    user_col: str
    item_col: str
    time_col: str
    text_cols: tuple[str, ...]
    event_type_col: str | None = None
    category_col: str | None = None
    price_col: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text_cols", tuple(c.strip() for c in self.text_cols if c.strip()))
        if not self.text_cols:
            raise DataImportError("text_cols: name at least one items-file column holding item text (the title)")


# ----------------------------------------------------------------------------------------------- public importers
def import_online_retail(path: str | Path, out_dir: str | Path) -> dict:
    """Import the UCI Online Retail log (parquet or csv) as daily batches under out_dir; returns the summary.

    Purchases become `purchase` events, cancellations (InvoiceNo starting with C) `purchase` events with negative
    quantity; rows without CustomerID (no user to attribute) and rows with a non-positive price or a zero/negative
    quantity on a non-cancelled invoice are dropped and counted.
    """
    path = Path(path)
    raw = _read_table(path, "Online Retail file")
    _require_columns(raw, {c: c for c in ONLINE_RETAIL_COLUMNS}, "Online Retail file", path)

    customer = pd.to_numeric(raw["CustomerID"], errors="coerce")
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce")
    unit_price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    invoice = raw["InvoiceNo"].astype("string").str.strip()
    cancelled = invoice.str.upper().str.startswith("C").fillna(False).to_numpy(bool)
    ts = _parse_timestamps(raw["InvoiceDate"], "InvoiceDate", path)

    reasons = {
        "no_customer_id": customer.isna().to_numpy(),
        "missing_timestamp": ts.isna().to_numpy(),
        "non_positive_price": ~(unit_price > 0).to_numpy(),
        "non_positive_quantity": ~cancelled & ~(quantity > 0).to_numpy(),
    }
    keep, dropped = _drop_rows(reasons)
    if not keep.any():
        raise DataImportError(f"{path}: no row has a CustomerID, a timestamp and a positive price; nothing to import")

    line = raw.groupby(invoice, sort=False).cumcount()  # position of the row inside its invoice, in file order
    kept_cancelled = cancelled[keep]
    qty = quantity[keep].to_numpy(float)
    events = pd.DataFrame(
        {
            "event_id": (invoice[keep] + "-" + line[keep].astype(str)).to_numpy(),
            "ts": ts[keep].to_numpy(),
            "user_id": _as_ids(customer[keep]).to_numpy(),
            "item_id": raw.loc[keep, "StockCode"].astype("string").str.strip().to_numpy(),
            "event_type": "purchase",
            "quantity": np.where(kept_cancelled, -np.abs(qty), qty),
            "price": unit_price[keep].to_numpy(float),
        }
    )
    titles = _most_frequent(events["item_id"], _clean_text(raw.loc[keep, "Description"]))
    price = _median_positive_price(events)
    items, untitled = _items_table(events, titles, description=None, category=None, price=price)
    countries = raw.loc[keep, "Country"] if "Country" in raw.columns else None
    users = _users_table(events, profiles=None if countries is None else _user_profiles(events, countries))

    summary = _write_daily_batches(events, items, users, Path(out_dir), source="online_retail", source_path=path)
    purchases = events[events["quantity"] > 0]
    summary.update(
        purchase_events=len(purchases),
        purchase_users=int(purchases["user_id"].nunique()),
        purchase_items=int(purchases["item_id"].nunique()),
        invoices=int(invoice[keep][~kept_cancelled].nunique()),
        cancellation_events=int(kept_cancelled.sum()),
        items_without_description=untitled,
        dropped=dropped,
    )
    return summary


def import_interactions(
    events_path: str | Path, items_path: str | Path, mapping: InteractionMapping, out_dir: str | Path
) -> dict:
    """Import a user's own events file and items file (csv or parquet) as daily batches; returns the summary.

    Events without an event-type column count as purchases. Events with a missing user/item/time, or whose item
    is not in the items file, are dropped and counted; a wrong mapping (missing column, unparseable time, unknown
    event type, no event matching the items file) is an error that says what is wrong.
    """
    events_path, items_path = Path(events_path), Path(items_path)
    raw_events = _read_table(events_path, "events file")
    raw_items = _read_table(items_path, "items file")
    m = mapping
    price_in_items = m.price_col is not None and m.price_col in raw_items.columns
    _require_columns(
        raw_events,
        {
            "--user-col": m.user_col,
            "--item-col": m.item_col,
            "--time-col": m.time_col,
            "--event-type-col": m.event_type_col,
            "--price-col": None if price_in_items else m.price_col,
        },
        "events file",
        events_path,
        extra_hint=" (--price-col is looked up in the items file first)" if m.price_col and not price_in_items else "",
    )
    _require_columns(
        raw_items,
        {"--item-col": m.item_col, "--category-col": m.category_col}
        | {f"--text-cols[{i}]": c for i, c in enumerate(m.text_cols)},
        "items file",
        items_path,
    )

    user_ids = _as_ids(raw_events[m.user_col])
    item_ids = _as_ids(raw_events[m.item_col])
    ts = _parse_timestamps(raw_events[m.time_col], m.time_col, events_path)
    event_types = _event_types(raw_events, m.event_type_col, events_path)

    items_raw = raw_items.assign(_item_id=_as_ids(raw_items[m.item_col]))
    items_raw = items_raw[items_raw["_item_id"].notna()]
    duplicate_item_rows = int(items_raw["_item_id"].duplicated().sum())
    items_raw = items_raw.drop_duplicates("_item_id", keep="first").set_index("_item_id")

    known_item = item_ids.isin(items_raw.index).to_numpy() | item_ids.isna().to_numpy()
    reasons = {
        "missing_user_id": user_ids.isna().to_numpy(),
        "missing_item_id": item_ids.isna().to_numpy(),
        "missing_timestamp": ts.isna().to_numpy(),
        "missing_event_type": event_types.isna().to_numpy(),
        "item_not_in_items_file": ~known_item,
    }
    keep, dropped = _drop_rows(reasons)
    if not keep.any():
        unknown = item_ids[~known_item].dropna().unique()[:5].tolist()
        hint = f"; e.g. items {unknown} are not in {items_path} (check --item-col)" if len(unknown) else ""
        raise DataImportError(f"{events_path}: no event left to import after dropping {dropped}{hint}")

    event_price = None
    if m.price_col and not price_in_items:
        event_price = _numeric(raw_events[m.price_col], m.price_col, events_path)[keep].to_numpy(float)
    events = pd.DataFrame(
        {
            "event_id": f"{_file_tag(events_path)}-" + pd.Series(np.flatnonzero(keep)).astype(str),
            "ts": ts[keep].to_numpy(),
            "user_id": user_ids[keep].to_numpy(),
            "item_id": item_ids[keep].to_numpy(),
            "event_type": event_types[keep].to_numpy(),
            "quantity": np.nan,
            "price": np.nan if event_price is None else event_price,
        }
    )

    texts = [_clean_text(items_raw[c]) for c in m.text_cols]
    description = None
    for more in texts[1:]:  # the other text columns, joined with " | " where present
        if description is None:
            description = more
        else:
            description = description.str.cat(more, sep=" | ").fillna(description).fillna(more)
    category = None
    if m.category_col:
        category = _clean_text(items_raw[m.category_col]).str.lower()
    if price_in_items:
        price = _numeric(items_raw[m.price_col], m.price_col, items_path).where(lambda p: p > 0)
    elif m.price_col:
        price = _median_positive_price(events)
    else:
        price = None
    items, untitled = _items_table(events, texts[0], description=description, category=category, price=price)
    users = _users_table(events, profiles=None)

    summary = _write_daily_batches(events, items, users, Path(out_dir), source="interactions", source_path=events_path)
    summary.update(
        event_types={k: int(v) for k, v in events["event_type"].value_counts().sort_index().items()},
        duplicate_item_rows=duplicate_item_rows,
        items_without_description=untitled,
        dropped=dropped,
    )
    return summary


def derive_categories(titles: pd.Series, min_items: int = MIN_ITEMS_PER_CATEGORY) -> pd.Series:
    """Coarse product-type category per title from its head noun (the rule in this module's docstring)."""
    words = [_content_words(t) for t in titles.fillna("")]
    heads = pd.Series([w[-1] for w in words if w])
    counts = heads.value_counts()
    vocabulary = set(counts[counts >= min_items].index)
    categories = [next((w for w in reversed(ws) if w in vocabulary), None) for ws in words]
    return pd.Series(
        [c.lower() if c else OTHER_CATEGORY for c in categories], index=titles.index, dtype="string"
    )


def _content_words(title: str) -> list[str]:
    """The title's letter-only words of 3+ letters, modifiers dropped, plurals singularised."""
    words = (w for w in re.findall(r"[A-Z]+", title.upper()) if len(w) >= 3 and w not in _MODIFIER_WORDS)
    return [s for s in map(_singular, words) if s not in _MODIFIER_WORDS]


def _singular(word: str) -> str:
    if word.endswith("IES") and len(word) > 4:
        return word[:-3] + "Y"
    if word.endswith(("XES", "CHES", "SHES", "SSES")):
        return word[:-2]
    if word.endswith("S") and not word.endswith(("SS", "US", "IS")):
        return word[:-1]
    return word


# ----------------------------------------------------------------------------------------------- reading inputs
def _read_table(path: Path, label: str) -> pd.DataFrame:
    """Read a csv (every column as text, so ids keep leading zeros) or parquet file, with clear errors."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataImportError(
            f"{label} {path}: unsupported extension '{path.suffix}'; use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise DataImportError(f"{label} {path} does not exist (or is not a file)")
    if path.stat().st_size == 0:
        raise DataImportError(f"{label} {path} is empty")
    try:
        df = pd.read_csv(path, dtype=str) if suffix == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataImportError(f"{label} {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataImportError(f"{label} {path} cannot be read as {suffix[1:]}: {exc}") from None
    if df.empty:
        raise DataImportError(f"{label} {path} has no rows (columns: {', '.join(map(str, df.columns))})")
    return df


def _file_tag(path: Path) -> str:
    """'<stem>-<8 hex of the content hash>': event ids stay unique across imports of different files."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stem}-{digest.hexdigest()[:8]}"


def _require_columns(df: pd.DataFrame, wanted: dict[str, str | None], label: str, path: Path, extra_hint: str = ""):
    """Fail naming every mapped column the file lacks, which option named it, and the columns it does have."""
    missing = [f"'{col}' ({option})" for option, col in wanted.items() if col is not None and col not in df.columns]
    if missing:
        raise DataImportError(
            f"{label} {path} has no column {', '.join(missing)}{extra_hint}; "
            f"available columns: {', '.join(map(str, df.columns))}"
        )


def _as_ids(values: pd.Series) -> pd.Series:
    """Ids as strings; whole-number floats (ids read through a NaN-holding float column) lose their '.0'."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():
            values = values.astype("Int64")
    ids = values.astype("string").str.strip()
    return ids.mask(ids == "")


def _clean_text(values: pd.Series) -> pd.Series:
    """Whitespace-normalised text with the literal 'nan' and empty strings as missing (cleaned once per value)."""
    codes, uniques = pd.factorize(values)
    text = pd.Series(uniques, dtype="string").str.replace(r"\s+", " ", regex=True).str.strip()
    text = text.mask(text.isin(["", "nan", "NaN", "None"]))
    return pd.Series(pd.array(text.to_numpy()[codes], dtype="string"), index=values.index).mask(codes < 0)


def _numeric(values: pd.Series, column: str, path: Path) -> pd.Series:
    """Numbers from a column; a value that is present but not a number is an error with an example."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise DataImportError(
            f"{path}: column '{column}' has {int(bad.sum())} non-numeric value(s), e.g. {values[bad].iloc[0]!r}"
        )
    return numbers


def _parse_timestamps(values: pd.Series, column: str, path: Path) -> pd.Series:
    """Tz-naive UTC timestamps from datetimes, date strings (offsets converted to UTC) or Unix epoch numbers.

    Epoch units follow the magnitude: seconds below 1e11, milliseconds below 1e14, microseconds above.
    A value that is present but cannot be parsed is an error quoting an example.
    """
    if not pd.api.types.is_datetime64_any_dtype(values) and not pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().any() and (numbers.notna() == values.notna()).all():  # epoch numbers read as text
            values = numbers
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values):
        magnitude = values.abs().max()
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else "us"
        parsed = pd.to_datetime(values, unit=unit, utc=True, errors="coerce")
    else:
        text = values.astype("string").str.strip().mask(lambda s: s == "")
        parsed = pd.to_datetime(text, utc=True, errors="coerce")
        retry = parsed.isna() & text.notna()
        if retry.any():  # formats differ between rows: parse the leftovers one by one
            parsed[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise DataImportError(
                f"{path}: column '{column}' has {int(bad.sum())} value(s) that are not timestamps, "
                f"e.g. {text[bad].iloc[0]!r}; use ISO 8601 like '2024-05-01 14:03:00' or Unix epoch numbers"
            )
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")


def _event_types(events: pd.DataFrame, column: str | None, path: Path) -> pd.Series:
    """Event types (lower-cased); all 'purchase' without a type column; unknown values are an error."""
    if column is None:
        return pd.Series("purchase", index=events.index, dtype="string")
    types = _clean_text(events[column]).str.lower()
    unknown = types[types.notna() & ~types.isin(EVENT_TYPES)].value_counts()
    if len(unknown):
        shown = ", ".join(f"'{v}' ({n} rows)" for v, n in unknown.head(5).items())
        raise DataImportError(
            f"{path}: column '{column}' has unknown event type(s) {shown}; allowed: {', '.join(EVENT_TYPES)}"
        )
    return types


def _drop_rows(reasons: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows to keep, and how many rows each reason dropped (each row counted once, under its first reason)."""
    drop = np.zeros(len(next(iter(reasons.values()))), dtype=bool)
    counts = {}
    for reason, mask in reasons.items():
        new = mask & ~drop
        counts[reason] = int(new.sum())
        drop |= mask
    return ~drop, counts


# ----------------------------------------------------------------------------------------------- building tables
def _most_frequent(keys: pd.Series, texts: pd.Series) -> pd.Series:
    """Per key, its most frequent non-missing text (ties: alphabetically first)."""
    pairs = pd.DataFrame({"key": keys.to_numpy(), "text": texts.to_numpy()}).dropna()
    counts = pairs.groupby(["key", "text"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["n", "text"], ascending=[False, True]).drop_duplicates("key")
    return counts.set_index("key")["text"].astype("string")


def _median_positive_price(events: pd.DataFrame) -> pd.Series:
    positive = events[events["price"] > 0]
    return positive.groupby("item_id")["price"].median()


def _items_table(events: pd.DataFrame, titles: pd.Series, description, category, price) -> tuple[pd.DataFrame, int]:
    """One row per item the events reference, and how many had no title text (titled 'item <id>' instead).

    Series arguments are indexed by item id; None means the source has no such field (category: derived rule).
    """
    first_ts = events.groupby("item_id")["ts"].min()
    ids = first_ts.index
    title = titles.reindex(ids)
    items = pd.DataFrame(
        {
            "item_id": ids,
            "title": title.fillna("item " + pd.Series(ids, index=ids)).to_numpy(),
            "description": None if description is None else description.reindex(ids).to_numpy(),
            "brand": None,
            "price": np.nan if price is None else price.reindex(ids).to_numpy(float),
            "first_seen": first_ts.dt.normalize().to_numpy(),
        }
    )
    if category is None:
        items["category"] = derive_categories(items["title"]).to_numpy()
    else:
        items["category"] = category.reindex(ids).fillna(OTHER_CATEGORY).to_numpy()
    return items, int(title.isna().sum())


def _user_profiles(events: pd.DataFrame, countries: pd.Series) -> pd.Series:
    """Online Retail: a user's profile text is the country most of their rows come from."""
    return _most_frequent(events["user_id"], _clean_text(countries)).map(lambda c: f"country: {c}")


def _users_table(events: pd.DataFrame, profiles: pd.Series | None) -> pd.DataFrame:
    ids = pd.Index(events["user_id"].unique()).sort_values()
    return pd.DataFrame({"user_id": ids, "profile": None if profiles is None else profiles.reindex(ids).to_numpy()})


# ----------------------------------------------------------------------------------------------- writing batches
def _write_daily_batches(
    events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, out_dir: Path, source: str, source_path: Path
) -> dict:
    """One self-contained batch per calendar day, each staged in a hidden folder and renamed into place."""
    events = events.assign(stream_id=None, text=None).sort_values("ts", kind="stable")  # ties keep file order
    day_names = events["ts"].dt.strftime("%Y-%m-%d")
    unique_days = day_names.unique()
    existing = [d for d in unique_days if (out_dir / d).exists()]
    if existing:
        raise DataImportError(
            f"{out_dir} already holds batch(es) for {len(existing)} of the {len(unique_days)} days to import "
            f"(e.g. {existing[0]}); batches are never overwritten: choose another --out or move them away"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    items = items.set_index("item_id", drop=False)
    users = users.set_index("user_id", drop=False)
    streams = empty("streams")
    bounds = np.flatnonzero(day_names.to_numpy()[1:] != day_names.to_numpy()[:-1]) + 1
    meta = {"source": source, "source_file": source_path.name}
    for day_events, name in zip(np.split(np.arange(len(events)), bounds), unique_days):
        day = events.iloc[day_events]
        tables = {
            "items": items.loc[day["item_id"].unique()],
            "streams": streams,
            "users": users.loc[day["user_id"].unique()],
            "events": day,
        }
        staging = out_dir / f".{name}.importing"
        shutil.rmtree(staging, ignore_errors=True)
        write_batch(tables, staging, meta=meta | {"day": name})
        os.replace(staging, out_dir / name)
    return {
        "source": source,
        "out_dir": str(out_dir),
        "days": len(unique_days),
        "first_day": str(unique_days[0]),
        "last_day": str(unique_days[-1]),
        "events": len(events),
        "users": len(users),
        "items": len(items),
        "items_without_price": int(items["price"].isna().sum()),
    }
