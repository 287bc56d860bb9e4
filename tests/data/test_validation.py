"""The validation gate on real files: a good batch is accepted, every corruption is quarantined, nothing is lost."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner
from validation_corpus import CORPUS, DAY, Corruption, set_cell, write_good_batch

from liveloop.config import ValidateConfig
from liveloop.data.schema import COLUMNS, NULLABLE, TABLES
from liveloop.validation import ALREADY_ACCEPTED, BatchInputError, gate_batch, validate_batch
from liveloop.validation.gx_adapter import SUITES_DIR, load_suite

NOW = datetime(2026, 1, 6, 12, 0)  # a fixed clock a day after the batch: "future" means after this


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    return {"incoming": tmp_path / "incoming", "accepted": tmp_path / "accepted", "quarantine": tmp_path / "quarantine"}


def test_good_batch_is_accepted_and_moved(roots):
    batch = write_good_batch(roots["incoming"])
    before = _snapshot(batch)
    result = gate_batch(batch, roots["accepted"], roots["quarantine"], ValidateConfig(), now=NOW)
    assert result.accepted, result.report.failures
    assert result.dest == roots["accepted"] / DAY
    assert not batch.exists()
    assert _snapshot(result.dest) == before  # accepted batches are not modified (no report files added)
    assert result.report.rows == {"items": 2, "streams": 1, "users": 2, "events": 12}
    assert result.report.skipped == []


@pytest.mark.parametrize("corruption", CORPUS, ids=[c.kind for c in CORPUS])
def test_corruption_is_quarantined_with_a_message_naming_it(roots, corruption: Corruption):
    batch = corruption.apply(write_good_batch(roots["incoming"]))
    before = _snapshot(batch)
    now = datetime.fromisoformat(corruption.now) if corruption.now else NOW
    result = gate_batch(batch, roots["accepted"], roots["quarantine"], ValidateConfig(**corruption.cfg), now=now)

    assert not result.accepted
    assert result.dest == roots["quarantine"] / batch.name
    assert not batch.exists() and not roots["accepted"].exists()
    text = "\n".join(result.report.failures)
    for words in corruption.expect:
        assert words in text, f"{corruption.kind}: {words!r} not in failures:\n{text}"
    after = _snapshot(result.dest)
    assert {name: after[name] for name in before} == before  # every original file there, byte-identical
    stored = json.loads(after["report.json"])
    assert stored["ok"] is False and stored["failures"] == result.report.failures
    assert all(f in after["report.md"].decode() for f in result.report.failures)


def test_copy_mode_leaves_the_source(roots):
    batch = write_good_batch(roots["incoming"])
    result = gate_batch(batch, roots["accepted"], roots["quarantine"], ValidateConfig(), move=False, now=NOW)
    assert result.accepted
    assert _snapshot(batch) == _snapshot(result.dest)


def test_second_batch_for_an_accepted_day_is_quarantined_not_overwritten(roots, tmp_path):
    batch = write_good_batch(roots["incoming"])
    first = gate_batch(batch, roots["accepted"], roots["quarantine"], ValidateConfig(), now=NOW)
    accepted_files = _snapshot(first.dest)
    again = write_good_batch(tmp_path / "resent")
    (again / "extra.txt").write_text("resent by the importer")
    result = gate_batch(again, roots["accepted"], roots["quarantine"], ValidateConfig(), now=NOW)
    assert not result.accepted
    assert any(ALREADY_ACCEPTED in f for f in result.report.failures)
    assert _snapshot(first.dest) == accepted_files
    assert (result.dest / "extra.txt").read_text() == "resent by the importer"


def test_quarantine_names_never_collide(roots, tmp_path):
    dests = []
    for source in ("a", "b"):
        batch = write_good_batch(tmp_path / source)
        (batch / "events.parquet").write_bytes(b"")
        (batch / "report.json").write_text('{"from": "an earlier run"}')  # a re-submitted quarantined batch
        dests.append(gate_batch(batch, roots["accepted"], roots["quarantine"], ValidateConfig(), now=NOW).dest)
    assert dests == [roots["quarantine"] / DAY, roots["quarantine"] / f"{DAY}.1"]
    for dest in dests:
        assert json.loads((dest / "report.json").read_text()) == {"from": "an earlier run"}
        assert json.loads((dest / "report.1.json").read_text())["ok"] is False


def test_validate_is_pure_and_reports_every_problem(roots):
    batch = write_good_batch(roots["incoming"])
    set_cell("events", "event_type", 0, "bought")(batch)
    set_cell("events", "price", 2, -1.0)(batch)
    before = _snapshot(batch)
    report = validate_batch(batch, ValidateConfig(), now=NOW)
    assert _snapshot(batch) == before
    assert not report.ok and len(report.failures) == 2
    assert report.to_dict()["failures"] == report.failures
    assert "REJECTED (2 problems)" in report.to_markdown()


def test_unreadable_reference_table_skips_its_checks_with_the_reason(roots):
    batch = write_good_batch(roots["incoming"])
    (batch / "items.parquet").write_bytes(b"PAR1 not really")
    report = validate_batch(batch, ValidateConfig(), now=NOW)
    assert any(f.startswith("items.parquet: cannot be read as parquet") for f in report.failures)
    assert "events.item_id: not checked (items.item_id could not be read)" in report.skipped


def test_not_a_batch_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BatchInputError, match="does not exist"):
        validate_batch(tmp_path / "nope", ValidateConfig())
    (tmp_path / "file.parquet").write_bytes(b"x")
    with pytest.raises(BatchInputError, match="not a folder"):
        validate_batch(tmp_path / "file.parquet", ValidateConfig())


def test_cli_accepts_and_quarantines(params_file: Path):
    from liveloop.cli import app

    root = params_file.parent
    runner = CliRunner()
    good = write_good_batch(root / "data" / "incoming")
    ok = runner.invoke(app, ["validate", str(good), "--params", str(params_file)])
    assert ok.exit_code == 0, ok.output
    assert (root / "data" / "accepted" / DAY / "events.parquet").exists()
    assert "accepted" in ok.output

    bad = write_good_batch(root / "data" / "incoming", "2026-01-06")
    (bad / "users.parquet").unlink()
    rejected = runner.invoke(app, ["validate", str(bad), "--params", str(params_file), "--copy"])
    assert rejected.exit_code == 1
    assert "users.parquet: file is missing" in rejected.output
    assert (root / "data" / "quarantine" / "2026-01-06" / "report.md").exists()
    assert bad.exists()  # --copy keeps the source

    missing = runner.invoke(app, ["validate", str(root / "no-such-batch"), "--params", str(params_file)])
    assert missing.exit_code == 2
    assert "error: batch folder" in missing.output and "Traceback" not in missing.output


def test_simulated_day_passes(tmp_path):
    simulator = pytest.importorskip("liveloop.data.simulator")
    from liveloop.config import SimulateConfig

    cfg = SimulateConfig(days=1, n_users=30, n_items=40, n_hosts=2, rooms_per_day=2, items_per_room=10)
    batches = simulator.simulate(cfg, 7, tmp_path / "incoming", tmp_path / "truth")
    report = validate_batch(batches[0], ValidateConfig(), now=datetime(2030, 1, 1))
    assert report.ok, report.failures
    assert report.rows["events"] > 0


@pytest.mark.parametrize("table", TABLES)
def test_committed_suite_matches_the_schema(table):
    """expectations/*.json must round-trip through GX and cover every column, type and non-null rule in schema.py."""
    suite = load_suite(table)
    stored = json.loads((SUITES_DIR / f"{table}.json").read_text())
    assert suite.to_json_dict()["expectations"] == stored["expectations"]
    by_type: dict[str, list[dict]] = {}
    for exp in stored["expectations"]:
        by_type.setdefault(exp["type"], []).append(exp["kwargs"])
    assert by_type["expect_table_columns_to_match_set"][0]["column_set"] == list(COLUMNS[table])
    typed = {k["column"] for k in by_type["expect_column_values_to_be_of_type"]}
    assert typed == {c for c, dtype in COLUMNS[table].items() if dtype != "object"}
    not_null = {k["column"] for k in by_type["expect_column_values_to_not_be_null"] if "row_condition" not in k}
    assert not_null == set(COLUMNS[table]) - NULLABLE[table]
    assert all(exp["meta"].get("problem") for exp in stored["expectations"])  # every failure has plain words
