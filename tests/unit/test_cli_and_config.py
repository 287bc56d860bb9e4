"""The CLI surface (help on every command) and params.yaml errors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.config import ConfigError, load_config

runner = CliRunner()
COMMANDS = ["simulate", "import-online-retail", "import-interactions", "validate", "train", "evaluate", "benchmark",
            "drift", "package", "models", "rollback", "show-config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--params" in result.output


def test_repo_params_load_and_resolve_paths():
    cfg = load_config(Path(__file__).resolve().parents[2] / "params.yaml")
    assert cfg.paths.root.is_absolute() and cfg.paths.state == cfg.paths.root / ".liveloop"
    assert cfg.loop.holdout_fraction > 0


@pytest.mark.parametrize("section, key, value, words", [
    ("simulate", "days", 0, "simulate.days"),
    ("simulate", "scenario", "tsunami", "simulate.scenario"),
    ("loop", "holdout_fraction", 1.5, "loop.holdout_fraction"),
    ("simulate", "no_such_key", 1, "simulate.no_such_key"),
])
def test_bad_values_name_the_field(params_file: Path, section, key, value, words):
    params = yaml.safe_load(params_file.read_text())
    params[section][key] = value
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(params_file)
    result = runner.invoke(app, ["show-config", "--params", str(params_file)])
    assert result.exit_code == 2 and words in result.output


def test_missing_and_malformed_config(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
