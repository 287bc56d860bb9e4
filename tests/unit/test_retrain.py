"""liveloop.loop.retrain_batch (`liveloop loop --retrain`, what a drift event runs): only accepted batches, and a batch
some candidate was already trained on is left alone. The retrain itself runs in test_prefect_server.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.loop import retrain_batch
from liveloop.validation import BatchInputError
from liveloop.workspace import open_workspace


def test_only_accepted_batches_are_retrained(params_file: Path):
    cfg, ws = open_workspace(params_file)
    incoming = ws.incoming / "2026-11-30"
    incoming.mkdir(parents=True)
    for batch in (incoming, ws.accepted / "2026-11-29"):  # not accepted; accepted but missing
        with pytest.raises(BatchInputError, match=f"{batch.name}.*is not an accepted batch"):
            retrain_batch(cfg, ws, batch)
    result = CliRunner().invoke(app, ["loop", "--retrain", str(incoming), "--params", str(params_file)])
    assert result.exit_code == 2 and "is not an accepted batch" in result.output, result.output
    assert incoming.is_dir() and not ws.registry_file.exists()  # nothing moved, nothing registered


def test_a_batch_already_trained_on_is_not_retrained(params_file: Path):
    cfg, ws = open_workspace(params_file)
    batch = ws.accepted / "2026-11-30"
    batch.mkdir(parents=True)  # no tables: a retrain would fail reading them, so passing means it was skipped
    ws.registry_file.parent.mkdir(parents=True, exist_ok=True)
    versions = [{"version": "v0001", "data_versions": {"2026-11-29": "a" * 32}},
                {"version": "v0002", "data_versions": {"2026-11-30": "b" * 32}}]
    ws.registry_file.write_text(json.dumps({"versions": versions}))
    result = retrain_batch(cfg, ws, batch)
    assert result["status"] == "already-retrained" and result["candidate"] == "v0002", result
    assert json.loads(ws.registry_file.read_text())["versions"] == versions
    assert not (ws.reports / "loop").exists()
