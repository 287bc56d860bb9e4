"""Importers: the real Online Retail log to the README's counts, and a user's own files with every mapping error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.data.adapters import (
    DataImportError,
    InteractionMapping,
    derive_categories,
    import_interactions,
    import_online_retail,
)
from liveloop.data.batches import batch_meta, list_batches, read_batch
from liveloop.data.schema import COLUMNS

ONLINE_RETAIL = Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail" / "online_retail.parquet"
MAPPING = InteractionMapping(user_col="uid", item_col="sku", time_col="when", text_cols=("name", "blurb"))


# --------------------------------------------------------------------------------------------- Online Retail
@pytest.fixture(scope="module")
def online_retail_import(tmp_path_factory):
    """One full import shared by the checks below (module scope: it takes ~15 s on 2 shared cores)."""
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"Online Retail data not found at {ONLINE_RETAIL}")
    out = tmp_path_factory.mktemp("online_retail")
    summary = import_online_retail(ONLINE_RETAIL, out)
    return summary, {batch: read_batch(batch) for batch in list_batches(out)}


@pytest.mark.slow
def test_online_retail_matches_readme_counts(online_retail_import):
    summary, batches = online_retail_import
    assert summary["days"] == len(batches) == 305
    assert summary["dropped"]["no_customer_id"] == 135_080
    assert summary["items_without_description"] == 0
    events = pd.concat([tables["events"] for tables in batches.values()], ignore_index=True)
    purchases = events[events["quantity"] > 0]
    # README clean subset: not cancelled, CustomerID present, Quantity>0, UnitPrice>0
    assert len(purchases) == summary["purchase_events"] == 397_884
    assert purchases["user_id"].nunique() == summary["purchase_users"] == 4_338
    assert purchases["item_id"].nunique() == summary["purchase_items"] == 3_665
    assert purchases["event_id"].str.split("-").str[0].nunique() == summary["invoices"] == 18_532
    assert events["event_id"].is_unique and (events["event_type"] == "purchase").all()
    assert events["stream_id"].isna().all()
    cancellations = events[events["quantity"] < 0]
    assert len(cancellations) == summary["cancellation_events"] > 0
    assert cancellations["event_id"].str.startswith("C").all()
    assert not purchases["event_id"].str.startswith("C").any()


@pytest.mark.slow
def test_online_retail_batches_are_self_contained(online_retail_import):
    _, batches = online_retail_import
    all_items = []
    for batch, tables in batches.items():
        assert set(tables["events"]["item_id"]) <= set(tables["items"]["item_id"]), batch
        assert set(tables["events"]["user_id"]) <= set(tables["users"]["user_id"]), batch
        assert tables["streams"].empty
        assert (tables["events"]["ts"].dt.strftime("%Y-%m-%d") == batch.name).all()
        assert batch_meta(batch)["source"] == "online_retail"
        all_items.append(tables["items"].assign(day=pd.Timestamp(batch.name)))
    items = pd.concat(all_items, ignore_index=True)
    titles = items["title"].str.lower()
    assert not titles.isin(["nan", ""]).any() and items["title"].notna().all()
    assert (items["price"] > 0).all() and items["brand"].isna().all()
    # first_seen is the first day the item appears anywhere, the same in every batch that carries the item
    first_day = items.groupby("item_id")["day"].min()
    assert (items["first_seen"] == items["item_id"].map(first_day)).all()
    assert (items["category"] != "other").mean() > 0.8
    holder = items.loc[items["title"] == "WHITE HANGING HEART T-LIGHT HOLDER", "category"]
    assert set(holder) == {"holder"}


def test_derive_categories_uses_shared_head_nouns():
    titles = pd.Series(
        [
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "GLASS CANDLE HOLDERS",
            "JUMBO BAG RED RETROSPOT",
            "PAPER BAGS",
            "LUNCH BAG CHRISTMAS",
            "TEA MUG",
            "PLASMATRONIC LAMP",
        ]
    )
    assert derive_categories(titles, min_items=2).tolist() == ["holder", "holder", "bag", "bag", "bag", "other", "other"]


def test_online_retail_small_csv_keeps_cancellations_and_counts_drops(tmp_path):
    rows = pd.DataFrame(
        {
            "InvoiceNo": ["1", "1", "C2", "3", "4", "5"],
            "StockCode": ["A", "B", "A", "B", "A", "B"],
            "Description": ["RED MUG", "nan", "RED MUG", "nan", "RED MUG", "nan"],
            "Quantity": [2, 1, -1, 1, 5, 3],
            "InvoiceDate": ["2011-01-01 09:00", "2011-01-01 09:00", "2011-01-02 10:00", "2011-01-02 11:00",
                            "2011-01-02 12:00", "2011-01-02 13:00"],
            "UnitPrice": [1.5, 2.0, 1.5, 0.0, 1.5, 2.5],
            "CustomerID": [17850.0, 17850.0, 17850.0, 12000.0, None, 12000.0],
            "Country": ["United Kingdom"] * 6,
        }
    )
    src = tmp_path / "retail.csv"
    rows.to_csv(src, index=False)
    summary = import_online_retail(src, tmp_path / "out")
    assert summary["dropped"] == {
        "no_customer_id": 1, "missing_timestamp": 0, "non_positive_price": 1, "non_positive_quantity": 0
    }
    assert summary["items_without_description"] == 1
    day2 = read_batch(tmp_path / "out" / "2011-01-02")
    events = day2["events"].set_index("event_id")
    assert events.loc["C2-0", "quantity"] == -1.0
    assert set(events.index) == {"C2-0", "5-0"}
    items = day2["items"].set_index("item_id")
    assert items.loc["B", "title"] == "item B"
    assert items.loc["A", "first_seen"] == pd.Timestamp("2011-01-01")
    assert set(day2["users"]["user_id"]) == {"17850", "12000"}


def test_online_retail_missing_columns_named(tmp_path):
    src = tmp_path / "retail.csv"
    pd.DataFrame({"InvoiceNo": ["1"], "StockCode": ["A"]}).to_csv(src, index=False)
    with pytest.raises(DataImportError, match=r"no column 'Description'.*available columns: InvoiceNo, StockCode"):
        import_online_retail(src, tmp_path / "out")


# --------------------------------------------------------------------------------------------- generic importer
def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _items(**extra) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": ["007", "008", "009"],
            "name": ["Red Tea Mug", "Canvas Tote Bag", None],
            "blurb": ["stoneware", None, "mystery"],
            **extra,
        }
    )


def _events(**extra) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uid": ["u1", "u2", "u1", "u3"],
            "sku": ["007", "008", "009", "007"],
            "when": ["2024-05-01 10:00:00", "2024-05-01T23:30:00+02:00", "2024-05-02 08:15:00", "2024-05-03 12:00"],
            **extra,
        }
    )


def test_interactions_csv_without_event_type_are_purchases(tmp_path):
    events = _write(_events(), tmp_path / "log.csv")
    items = _write(_items(), tmp_path / "catalog.csv")
    summary = import_interactions(events, items, MAPPING, tmp_path / "out")
    batches = list_batches(tmp_path / "out")
    # "+02:00" is converted to UTC, so the second event lands on 2024-05-01 21:30
    assert [b.name for b in batches] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert summary["events"] == 4 and summary["days"] == 3 and summary["event_types"] == {"purchase": 4}
    assert summary["items_without_description"] == 1 and summary["items_without_price"] == 3
    day1 = read_batch(batches[0])
    assert set(day1["events"]["ts"]) == {pd.Timestamp("2024-05-01 10:00"), pd.Timestamp("2024-05-01 21:30")}
    items1 = day1["items"].set_index("item_id")
    assert set(items1.index) == {"007", "008"}  # only what the day references; leading zeros kept
    assert items1.loc["007", "title"] == "Red Tea Mug" and items1.loc["007", "description"] == "stoneware"
    assert pd.isna(items1.loc["008", "description"])
    day2 = read_batch(batches[1])
    assert day2["items"].loc[0, "title"] == "item 009" and day2["items"].loc[0, "description"] == "mystery"
    day3 = read_batch(batches[2])
    assert day3["items"].loc[0, "first_seen"] == pd.Timestamp("2024-05-01")
    for batch in batches:  # round trip: every table back with the schema's columns and no stream
        tables = read_batch(batch)
        for name, frame in tables.items():
            assert list(frame.columns) == list(COLUMNS[name])
        assert tables["streams"].empty and tables["events"]["stream_id"].isna().all()
        assert batch_meta(batch)["source"] == "interactions"


def test_interactions_parquet_with_types_category_and_event_price(tmp_path):
    events = _write(
        _events(kind=["Click", "purchase", "add_to_cart", "impression"], paid=[9.0, 4.0, None, 11.0]).assign(
            when=lambda d: pd.to_datetime(d["when"], format="ISO8601", utc=True)  # tz-aware column
        ),
        tmp_path / "log.parquet",
    )
    items = _write(_items(cat=["Kitchen", "Bags", None]), tmp_path / "catalog.parquet")
    mapping = InteractionMapping(
        user_col="uid", item_col="sku", time_col="when", text_cols=("name",),
        event_type_col="kind", category_col="cat", price_col="paid",
    )
    summary = import_interactions(events, items, mapping, tmp_path / "out")
    assert summary["event_types"] == {"add_to_cart": 1, "click": 1, "impression": 1, "purchase": 1}
    frames = [read_batch(b) for b in list_batches(tmp_path / "out")]
    items_all = pd.concat([f["items"] for f in frames]).drop_duplicates("item_id").set_index("item_id")
    assert items_all.loc["007", "price"] == 10.0  # median of 9 and 11
    assert pd.isna(items_all.loc["009", "price"])
    assert items_all["category"].to_dict() == {"007": "kitchen", "008": "bags", "009": "other"}
    assert items_all["description"].isna().all()
    events_all = pd.concat([f["events"] for f in frames])
    first = events_all[events_all["event_id"].str.fullmatch(r"log-[0-9a-f]{8}-0")].iloc[0]
    assert first["event_type"] == "click" and first["price"] == 9.0


def test_interactions_price_column_in_items_file(tmp_path):
    events = _write(_events(), tmp_path / "log.csv")
    items = _write(_items(cost=["3.5", "-1", "2"]), tmp_path / "catalog.csv")
    mapping = InteractionMapping(user_col="uid", item_col="sku", time_col="when", text_cols=("name",), price_col="cost")
    import_interactions(events, items, mapping, tmp_path / "out")
    frames = [read_batch(b) for b in list_batches(tmp_path / "out")]
    prices = pd.concat([f["items"] for f in frames]).drop_duplicates("item_id").set_index("item_id")["price"]
    assert prices["007"] == 3.5 and pd.isna(prices["008"]) and prices["009"] == 2.0
    assert pd.concat([f["events"] for f in frames])["price"].isna().all()


def test_interactions_unknown_items_dropped_and_counted_epoch_times(tmp_path):
    epoch_seconds = ["1714557600", "1714557600", "1714644000", ""]  # 2024-05-01 10:00 UTC, ..., one missing
    events = _write(_events(sku=["007", "999", "009", "007"], when=epoch_seconds), tmp_path / "log.csv")
    items = _write(_items(), tmp_path / "catalog.csv")
    summary = import_interactions(events, items, MAPPING, tmp_path / "out")
    assert summary["dropped"]["item_not_in_items_file"] == 1 and summary["dropped"]["missing_timestamp"] == 1
    assert summary["events"] == 2 and summary["first_day"] == "2024-05-01" and summary["last_day"] == "2024-05-02"
    day1 = read_batch(tmp_path / "out" / "2024-05-01")["events"]
    assert day1["ts"].tolist() == [pd.Timestamp("2024-05-01 10:00")]
    assert day1["event_id"].str.fullmatch(r"log-[0-9a-f]{8}-0").all()  # file tag + row number in the file


# --------------------------------------------------------------------------------------------- mapping errors
@pytest.fixture
def files(tmp_path):
    return _write(_events(), tmp_path / "log.csv"), _write(_items(), tmp_path / "catalog.csv")


def test_error_missing_column_names_it_and_lists_available(files, tmp_path):
    events, items = files
    mapping = InteractionMapping(user_col="user", item_col="sku", time_col="when", text_cols=("name",))
    with pytest.raises(DataImportError, match=r"no column 'user' \(--user-col\); available columns: uid, sku, when"):
        import_interactions(events, items, mapping, tmp_path / "out")
    mapping = InteractionMapping(user_col="uid", item_col="sku", time_col="when", text_cols=("title",))
    with pytest.raises(DataImportError, match=r"items file .* no column 'title' \(--text-cols\[0\]\)"):
        import_interactions(events, items, mapping, tmp_path / "out")


def test_error_unparseable_timestamp_shows_example(tmp_path, files):
    events = _write(_events(when=["2024-05-01", "yesterday", "2024-05-02", "2024-05-03"]), tmp_path / "bad.csv")
    with pytest.raises(DataImportError, match=r"column 'when' has 1 value\(s\) that are not timestamps, e.g. 'yesterday'"):
        import_interactions(events, files[1], MAPPING, tmp_path / "out")


def test_error_unknown_event_type_lists_allowed(tmp_path, files):
    events = _write(_events(kind=["click", "view", "view", "purchase"]), tmp_path / "typed.csv")
    mapping = InteractionMapping(user_col="uid", item_col="sku", time_col="when", text_cols=("name",), event_type_col="kind")
    with pytest.raises(DataImportError, match=r"unknown event type\(s\) 'view' \(2 rows\); allowed: impression, click"):
        import_interactions(events, files[1], mapping, tmp_path / "out")


def test_error_no_event_matches_items_file(tmp_path, files):
    items = _write(_items(sku=["1", "2", "3"]), tmp_path / "other.csv")
    with pytest.raises(DataImportError, match=r"item_not_in_items_file': 4.*e.g. items \['007', '008', '009'\]"):
        import_interactions(files[0], items, MAPPING, tmp_path / "out")


def test_error_empty_files(tmp_path, files):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataImportError, match=r"events file .*empty.csv is empty"):
        import_interactions(empty, files[1], MAPPING, tmp_path / "out")
    header_only = tmp_path / "header.csv"
    header_only.write_text("sku,name,blurb\n")
    with pytest.raises(DataImportError, match=r"items file .*header.csv has no rows"):
        import_interactions(files[0], header_only, MAPPING, tmp_path / "out")


def test_error_unsupported_extension_and_missing_file(tmp_path, files):
    with pytest.raises(DataImportError, match=r"unsupported extension '.xlsx'; use one of .csv, .parquet"):
        import_interactions(tmp_path / "log.xlsx", files[1], MAPPING, tmp_path / "out")
    with pytest.raises(DataImportError, match=r"nothere.csv does not exist"):
        import_interactions(tmp_path / "nothere.csv", files[1], MAPPING, tmp_path / "out")


def test_error_never_overwrites_existing_batch(tmp_path, files):
    import_interactions(*files, MAPPING, tmp_path / "out")
    before = read_batch(tmp_path / "out" / "2024-05-01")["events"]
    with pytest.raises(DataImportError, match=r"already holds batch\(es\) for 3 of the 3 days"):
        import_interactions(*files, MAPPING, tmp_path / "out")
    pd.testing.assert_frame_equal(read_batch(tmp_path / "out" / "2024-05-01")["events"], before)


def test_error_no_text_columns():
    with pytest.raises(DataImportError, match="text_cols"):
        InteractionMapping(user_col="uid", item_col="sku", time_col="when", text_cols=(" ",))


# --------------------------------------------------------------------------------------------- CLI
def test_cli_import_interactions_and_one_line_error(tmp_path, files, params_file):
    events, items = files
    base = ["import-interactions", "--events", str(events), "--items", str(items), "--user-col", "uid",
            "--item-col", "sku", "--time-col", "when", "--text-cols", "name,blurb", "-p", str(params_file)]
    ok = CliRunner().invoke(app, base)
    assert ok.exit_code == 0, ok.output
    assert '"events": 4' in ok.output
    assert "warning: 3 of 3 items have no positive price" in ok.output  # the gate would quarantine them
    assert len(list_batches(tmp_path / "data" / "incoming")) == 3  # default --out: the workspace's incoming
    bad = CliRunner().invoke(app, [*base[:-2], "--out", str(tmp_path / "o2"), "--time-col", "stamp", "-p", str(params_file)])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines() == [
        f"error: events file {events} has no column 'stamp' (--time-col); available columns: uid, sku, when"
    ]


def test_cli_import_online_retail_bad_path(tmp_path, params_file):
    result = CliRunner().invoke(app, ["import-online-retail", str(tmp_path / "retail.xlsx"), "-p", str(params_file)])
    assert result.exit_code == 1
    assert "error: Online Retail file" in result.output and "unsupported extension '.xlsx'" in result.output
