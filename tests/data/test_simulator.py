"""The live-commerce simulator: contract, determinism, funnel, drift scenarios, oracle and CLI (tiny worlds)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.config import SimulateConfig
from liveloop.data.batches import batch_meta, concat_batches, list_batches, read_batch
from liveloop.data.schema import COLUMNS, NULLABLE, TABLES
from liveloop.data.simulator import (
    NEW_CATEGORY,
    SHIFTED_COMMENT_TEMPLATES,
    SimulationError,
    oracle_scores,
    simulate,
    with_overrides,
)

SEED = 11
DRIFT_DAY = 2
# One room per host and day, so the category mix of the supply is steady and drifts show in the demand.
TINY = dict(days=4, drift_day=DRIFT_DAY, n_users=200, n_items=120, n_hosts=10, rooms_per_day=10, items_per_room=20)
SCENARIOS = ("stable", "seasonal-shift", "new-category", "price-shock", "host-churn", "comment-shift")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[list[Path], Path]]:
    """Every scenario simulated once with the same seed: scenario -> (day folders, truth folder)."""
    root = tmp_path_factory.mktemp("sim")
    return {
        name: (simulate(SimulateConfig(scenario=name, **TINY), SEED, root / name / "in", root / name / "truth"),
               root / name / "truth")
        for name in SCENARIOS
    }


def _days(dirs: list[Path], after_drift: bool) -> dict[str, pd.DataFrame]:
    return concat_batches([d for i, d in enumerate(dirs) if (i >= DRIFT_DAY) == after_drift])


def _tokens(texts) -> set[str]:
    return {t for text in texts for t in re.findall(r"\w+", text.lower())}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, runs):
    dirs, truth = runs["stable"]
    again = simulate(SimulateConfig(scenario="stable", **TINY), SEED, tmp_path / "in", tmp_path / "truth")
    assert [d.name for d in again] == [d.name for d in dirs]
    for first, second in zip(dirs, again):
        assert _folder_bytes(first) == _folder_bytes(second)
    assert _folder_bytes(truth) == _folder_bytes(tmp_path / "truth")
    other = simulate(SimulateConfig(scenario="stable", **TINY), SEED + 1, tmp_path / "in2", tmp_path / "truth2")
    assert not read_batch(other[0])["events"].equals(read_batch(dirs[0])["events"])


@pytest.mark.parametrize("scenario", SCENARIOS[1:])
def test_drift_scenarios_equal_stable_before_the_drift_day(runs, scenario):
    stable, drifted = runs["stable"][0], runs[scenario][0]
    for day in range(DRIFT_DAY):
        for table in TABLES:
            name = f"{table}.parquet"
            assert (stable[day] / name).read_bytes() == (drifted[day] / name).read_bytes(), (scenario, day, table)
    assert not read_batch(stable[DRIFT_DAY])["events"].equals(read_batch(drifted[DRIFT_DAY])["events"])


# ---------------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_batches_follow_the_schema_and_are_self_contained(runs, scenario):
    dirs, _ = runs[scenario]
    assert [d.name for d in dirs] == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
    seen_event_ids: set[str] = set()
    for index, batch in enumerate(dirs):
        meta = batch_meta(batch)
        assert meta == {"day": batch.name, "source": "simulator", "scenario": scenario, "seed": SEED,
                        "drift_day": None if scenario == "stable" else DRIFT_DAY, "day_index": index}
        tables = read_batch(batch)
        day_start = pd.Timestamp(batch.name)
        for name in TABLES:
            frame = tables[name]
            assert list(frame.columns) == list(COLUMNS[name])
            for column in set(COLUMNS[name]) - NULLABLE[name]:
                assert frame[column].notna().all(), (name, column)
        items, streams, users, events = (tables[t] for t in TABLES)
        assert events["event_id"].is_unique and not seen_event_ids & set(events["event_id"])
        seen_event_ids |= set(events["event_id"])
        assert events["ts"].between(day_start, day_start + pd.Timedelta(days=1), inclusive="left").all()
        assert (streams["start"] >= day_start).all() and (streams["end"] < day_start + pd.Timedelta(days=1)).all()
        assert (streams["start"] < streams["end"]).all()
        assert set(events["item_id"]) <= set(items["item_id"]) and set(events["user_id"]) == set(users["user_id"])
        assert set(events["stream_id"]) <= set(streams["stream_id"])
        assert set(items["item_id"]) == {i for ids in streams["item_ids"] for i in ids}
        assert (items["first_seen"] <= day_start).all() and (items["price"] > 0).all()
        money = events["event_type"].isin(["add_to_cart", "purchase"])
        assert (events.loc[money, "quantity"] >= 1).all() and (events.loc[money, "price"] > 0).all()
        assert events.loc[~money, ["quantity", "price"]].isna().all().all()
        comment = events["event_type"] == "comment"
        assert events.loc[comment, "text"].str.len().gt(0).all() and events.loc[~comment, "text"].isna().all()
        assert set(events["event_type"]) == {"impression", "click", "add_to_cart", "purchase", "comment"}


def test_new_products_keep_appearing(runs):
    dirs, _ = runs["stable"]
    launched = [(read_batch(d)["items"]["first_seen"] == pd.Timestamp(d.name)).sum() for d in dirs[1:]]
    assert sum(launched) > 0  # cold-start items shown on their launch day


def test_only_products_in_a_live_room_get_events(runs):
    for dirs, _ in runs.values():
        for batch in dirs:
            tables = read_batch(batch)
            rooms = tables["streams"].set_index("stream_id")
            events = tables["events"].join(rooms[["start", "end", "item_ids"]], on="stream_id")
            assert events["stream_id"].notna().all()
            assert events["ts"].between(events["start"], events["end"]).all()
            assert all(item in shown for item, shown in zip(events["item_id"], events["item_ids"]))


# ------------------------------------------------------------------------------------------------------ funnel
def test_funnel_is_monotone_and_every_step_has_its_predecessor(runs):
    for batch in runs["stable"][0]:
        events = read_batch(batch)["events"]
        counts = events["event_type"].value_counts()
        assert counts["impression"] > counts["click"] > counts["add_to_cart"] >= counts["purchase"] > 0
        key = ["user_id", "item_id", "stream_id"]
        for step, before in (("click", "impression"), ("add_to_cart", "click"), ("purchase", "add_to_cart")):
            earlier = events[events["event_type"] == before].groupby(key)["ts"].min()
            later = events[events["event_type"] == step].set_index(key)["ts"]
            assert (earlier.reindex(later.index).to_numpy() <= later.to_numpy()).all(), step


def test_repeat_purchases_exist_and_are_consumables(runs):
    history = concat_batches(runs["stable"][0])
    purchases = history["events"][history["events"]["event_type"] == "purchase"]
    per_pair = purchases.groupby(["user_id", "item_id"]).size().rename("times").reset_index()
    category = history["items"].set_index("item_id")["category"]
    per_pair["consumable"] = category.loc[per_pair["item_id"]].isin(["beauty", "snacks"]).to_numpy()
    repeat_rate = per_pair.groupby("consumable")["times"].apply(lambda t: (t > 1).mean())
    assert repeat_rate[True] > 0.15 and repeat_rate[True] > 3 * repeat_rate[False]


def test_purchases_concentrate_on_each_users_interest_category(runs):
    dirs, truth = runs["stable"]
    history = concat_batches(dirs)
    purchases = history["events"][history["events"]["event_type"] == "purchase"]
    weights = pd.read_parquet(truth / "users_phase0.parquet").set_index("user_id")
    category_cols = [c for c in weights.columns if c.startswith("category=")]
    favourite = weights[category_cols].idxmax(axis=1).str.removeprefix("category=")
    bought = history["items"].set_index("item_id")["category"].loc[purchases["item_id"]].to_numpy()
    share = (bought == favourite.loc[purchases["user_id"]].to_numpy()).mean()
    assert share > 0.4  # 8 categories: chance would be ~0.15


# ------------------------------------------------------------------------------------------------------ drifts
def _category_share(frame: dict[str, pd.DataFrame]) -> pd.Series:
    events = frame["events"]
    clicks = events[events["event_type"] == "click"]
    categories = frame["items"].set_index("item_id")["category"].loc[clicks["item_id"]]
    return categories.value_counts(normalize=True)


def _category_shift(dirs: list[Path]) -> float:
    before, after = _category_share(_days(dirs, False)), _category_share(_days(dirs, True))
    return 0.5 * before.subtract(after, fill_value=0).abs().sum()


def test_seasonal_shift_moves_the_category_mix(runs):
    seasonal, stable = _category_shift(runs["seasonal-shift"][0]), _category_shift(runs["stable"][0])
    assert seasonal > 0.3 and stable < 0.2 and seasonal > 2 * stable


def test_new_category_brings_new_vocabulary_after_the_drift_only(runs):
    for scenario in ("new-category", "stable"):
        dirs = runs[scenario][0]
        before, after = _days(dirs, False), _days(dirs, True)
        assert NEW_CATEGORY.name not in set(before["items"]["category"])
        new_words = _tokens(after["items"]["title"]) - _tokens(before["items"]["title"])
        if scenario == "stable":
            assert NEW_CATEGORY.name not in set(after["items"]["category"])
            continue
        assert NEW_CATEGORY.name in set(after["items"]["category"])
        assert {b.lower() for b in NEW_CATEGORY.brands} & new_words
        events = after["events"]
        bought = events[events["event_type"].isin(["click", "purchase"])]["item_id"]
        assert (after["items"].set_index("item_id")["category"].loc[bought] == NEW_CATEGORY.name).any()


def test_price_shock_raises_prices_after_the_drift_only(runs):
    for scenario in ("price-shock", "stable"):
        dirs = runs[scenario][0]
        before, after = _days(dirs, False), _days(dirs, True)
        ratio = (after["items"].set_index("item_id")["price"] / before["items"].set_index("item_id")["price"]).dropna()
        shocked = ratio[ratio > 1.001]
        if scenario == "stable":
            assert len(shocked) == 0
            continue
        assert len(shocked) > 0 and shocked.between(1.49, 2.01).all() and (ratio[ratio <= 1.001] == 1.0).all()
        categories = before["items"].set_index("item_id")["category"]
        assert 1 <= categories.loc[shocked.index].nunique() <= 3
        events = after["events"]
        paid = events[events["event_type"] == "purchase"].set_index("item_id")["price"]
        assert np.allclose(paid.to_numpy(), after["items"].set_index("item_id")["price"].loc[paid.index].to_numpy())


def test_host_churn_brings_new_hosts_and_retires_old_ones(runs):
    for scenario in ("host-churn", "stable"):
        dirs, truth = runs[scenario]
        hosts = pd.read_parquet(truth / "hosts.parquet").set_index("host_id")
        before = set(_days(dirs, False)["streams"]["host_id"])
        after = set(_days(dirs, True)["streams"]["host_id"])
        assert before <= set(hosts.index[hosts["active_from_day"] == 0])
        newcomers = after - set(hosts.index[hosts["active_from_day"] == 0])
        retired = set(hosts.index[hosts["active_to_day"] <= DRIFT_DAY])
        assert not after & retired
        if scenario == "host-churn":
            assert newcomers and retired
        else:
            assert not newcomers and not retired


def test_comment_shift_changes_comment_language_after_the_drift_only(runs):
    markers = _tokens(prefix + suffix for prefix, _, suffix in SHIFTED_COMMENT_TEMPLATES) - {"el"}
    for scenario in ("comment-shift", "stable"):
        dirs = runs[scenario][0]
        comments = {
            phase: _days(dirs, phase)["events"].query("event_type == 'comment'")["text"] for phase in (False, True)
        }
        share_before = comments[False].map(lambda t: bool(_tokens([t]) & markers)).mean()
        share_after = comments[True].map(lambda t: bool(_tokens([t]) & markers)).mean()
        assert share_before == 0
        assert share_after > 0.95 if scenario == "comment-shift" else share_after == 0


# ------------------------------------------------------------------------------------------------------ oracle
def test_oracle_scores_rank_purchases_above_ignored_impressions(runs):
    dirs, truth = runs["stable"]
    events = read_batch(dirs[1])["events"]
    users, items = sorted(set(events["user_id"])), sorted(set(events["item_id"]))
    scores = oracle_scores(truth, users, items, date.fromisoformat(dirs[1].name))
    assert scores.shape == (len(users), len(items)) and np.isfinite(scores).all()

    def at(frame: pd.DataFrame) -> np.ndarray:
        return scores[pd.Index(users).get_indexer(frame["user_id"]), pd.Index(items).get_indexer(frame["item_id"])]

    bought = at(events[events["event_type"] == "purchase"])
    positives = events[events["event_type"] == "click"].set_index(["user_id", "item_id"]).index
    impressions = events[events["event_type"] == "impression"]
    ignored = at(impressions[~impressions.set_index(["user_id", "item_id"]).index.isin(positives)])
    auc = (bought[:, None] > ignored[None, :]).mean()
    assert auc > 0.8


def test_oracle_follows_the_drift_phase(runs):
    for scenario, should_change in (("seasonal-shift", True), ("price-shock", True), ("stable", False)):
        truth = runs[scenario][1]
        users = pd.read_parquet(truth / "users_phase0.parquet")["user_id"].tolist()[:50]
        items = pd.read_parquet(truth / "items.parquet")["item_id"].tolist()[:50]
        before = oracle_scores(truth, users, items, date(2026, 1, 5) + pd.Timedelta(days=DRIFT_DAY - 1))
        after = oracle_scores(truth, users, items, date(2026, 1, 5) + pd.Timedelta(days=DRIFT_DAY))
        assert (not np.allclose(before, after)) == should_change, scenario
    assert json.loads((runs["stable"][1] / "truth.json").read_text())["phases"] == [
        {"phase": 0, "from_day_index": 0, "users": "users_phase0.parquet", "price": "price_0"}
    ]


def test_oracle_rejects_unknown_ids_and_missing_truth(runs, tmp_path):
    truth = runs["stable"][1]
    with pytest.raises(SimulationError, match="item id.*unknown.*nope"):
        oracle_scores(truth, ["u00001"], ["nope"], date(2026, 1, 5))
    with pytest.raises(SimulationError, match="truth.json missing"):
        oracle_scores(tmp_path, ["u00001"], ["p000001"], date(2026, 1, 5))


# ------------------------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"scenario": "winter"}, "scenario: Input should be"), ({"days": 0}, "days: Input should be greater"),
     ({"days": 3, "drift_day": 3}, "drift_day 3 is beyond the run"),
     ({"start_date": "2026-02-30"}, "start_date '2026-02-30' is not a calendar day")],
)
def test_bad_settings_raise_a_clear_error_and_write_nothing(tmp_path, overrides, message):
    with pytest.raises(SimulationError, match=message):
        simulate(with_overrides(SimulateConfig(**TINY), **overrides), SEED, tmp_path / "in", tmp_path / "truth")
    assert not (tmp_path / "in").exists() and not (tmp_path / "truth").exists()


def test_existing_days_and_foreign_truth_are_not_overwritten_silently(tmp_path):
    cfg = SimulateConfig(**{**TINY, "days": 1, "drift_day": None})
    first = simulate(cfg, SEED, tmp_path / "in", tmp_path / "truth")
    before = _folder_bytes(first[0])
    with pytest.raises(SimulationError, match="already exist"):
        simulate(cfg, SEED, tmp_path / "in", tmp_path / "truth")
    with pytest.raises(SimulationError, match="truth of a different simulator run"):
        simulate(cfg, SEED + 1, tmp_path / "other", tmp_path / "truth")
    assert _folder_bytes(first[0]) == before
    simulate(cfg, SEED + 1, tmp_path / "in", tmp_path / "truth", overwrite=True)
    assert _folder_bytes(first[0]) != before and list_batches(tmp_path / "in") == first
    assert not [p for p in (tmp_path / "in").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_simulates_into_the_workspace(params_file):
    root = params_file.parent
    result = CliRunner().invoke(app, ["simulate", "--days", "2", "--scenario", "host-churn", "--seed", "3",
                                      "--params", str(params_file)])
    assert result.exit_code == 0, result.output
    written = list_batches(root / "data" / "incoming")
    assert [d.name for d in written] == ["2026-01-05", "2026-01-06"]
    assert batch_meta(written[1]) == {"day": "2026-01-06", "source": "simulator", "scenario": "host-churn",
                                          "seed": 3, "drift_day": 1, "day_index": 1}
    assert (root / "data" / "simulator" / "truth.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--scenario", "winter"], "scenario"), (["--days", "0"], "days"), (["--days", "2", "--drift-day", "2"],
                                                                          "drift_day 2 is beyond the run")],
)
def test_cli_bad_arguments_give_one_error_line(params_file, tmp_path, args, message):
    result = CliRunner().invoke(app, ["simulate", *args, "--out", str(tmp_path / "out"), "--params", str(params_file)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_simulate_out_keeps_its_truth_beside_it(params_file, tmp_path):
    """README: `liveloop simulate ... --out DIR` twice elsewhere; neither run touches the workspace's data/simulator."""
    for seed, out in ((1, tmp_path / "a"), (2, tmp_path / "b")):
        result = CliRunner().invoke(app, ["simulate", "--days", "1", "--seed", str(seed), "--out", str(out),
                                          "--params", str(params_file)])
        assert result.exit_code == 0, result.output
        assert (out.with_name(out.name + "-truth") / "truth.json").exists()
    assert not (tmp_path / "data" / "simulator").exists()
