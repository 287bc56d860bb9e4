"""A bento served without params.yaml reads the serve settings packaged with its model; a package from an older
liveloop may carry settings since removed, and must still start (they are ignored), while a bad value still fails."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from liveloop.serving.package import PACKAGE_FILE
from liveloop.serving.service import _settings


def _package(tmp_path, serve: dict):
    model = tmp_path / "model"
    model.mkdir()
    (model / PACKAGE_FILE).write_text(json.dumps({"serve": serve}))
    return model


def test_a_package_with_a_retired_serve_setting_still_starts(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("LIVELOOP_PARAMS", raising=False)
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    model = _package(tmp_path, {"max_k": 7, "retrieval_margin": 50})
    with caplog.at_level("WARNING", logger="liveloop.serving"):
        cfg, _ = _settings(model)
    assert cfg.serve.max_k == 7
    assert "retrieval_margin" in caplog.text


def test_a_bad_packaged_value_still_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("LIVELOOP_PARAMS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="max_k"):
        _settings(_package(tmp_path, {"max_k": 0}))
