"""Registry: lineage entries, atomic champion swaps, rejection leaves the champion alone, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liveloop import registry
from liveloop.workspace import Workspace


def _model(tmp: Path, name: str, payload: bytes) -> Path:
    d = tmp / "cands" / name
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(payload)
    (d / "config.json").write_text("{}")
    (d / "optimizer.safetensors").write_bytes(b"opt")
    return d


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(root=tmp_path, state=tmp_path / ".liveloop")


def _register(ws, tmp_path, name, parent=None):
    return registry.register(ws, _model(tmp_path, name, name.encode()), parent=parent,
                             data_versions={"2026-01-01": "abc.dir"}, params={"seed": 1}, metrics={"ndcg@10": 0.1})


def test_register_copies_model_without_optimizer_and_records_lineage(ws, tmp_path):
    entry = _register(ws, tmp_path, "a")
    assert entry["version"] == "v0001" and entry["status"] == "candidate"
    dest = ws.root / entry["path"]
    assert (dest / "model.safetensors").read_bytes() == b"a"
    assert not (dest / "optimizer.safetensors").exists()
    saved = registry.load_registry(ws)
    assert saved[0]["data_versions"] == {"2026-01-01": "abc.dir"} and saved[0]["params"] == {"seed": 1}
    assert registry.champion_dir(ws) is None


def test_promote_reject_and_rollback(ws, tmp_path):
    v1 = _register(ws, tmp_path, "a")["version"]
    registry.promote(ws, v1, ["first model"])
    v2 = _register(ws, tmp_path, "b", parent=v1)["version"]
    registry.reject(ws, v2, ["worse on replay"])
    assert registry.champion_version(ws) == v1, "a rejected candidate must not touch the champion"
    v3 = _register(ws, tmp_path, "c", parent=v1)["version"]
    registry.promote(ws, v3)
    assert registry.champion_version(ws) == v3
    assert (registry.champion_dir(ws) / "model.safetensors").read_bytes() == b"c"
    statuses = {e["version"]: e["status"] for e in registry.load_registry(ws)}
    assert statuses == {v1: "retired", v2: "rejected", v3: "champion"}
    assert registry.rollback(ws) == v1
    assert registry.champion_version(ws) == v1
    assert json.loads(ws.champion_pointer.read_text())["path"].endswith(v1)


def test_errors_name_the_problem(ws, tmp_path):
    with pytest.raises(registry.RegistryError, match="v0009"):
        registry.promote(ws, "v0009")
    with pytest.raises(registry.RegistryError, match="no champion"):
        registry.rollback(ws)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(registry.RegistryError, match="model.safetensors"):
        registry.register(ws, empty, parent=None, data_versions={}, params={}, metrics={})
    v1 = _register(ws, tmp_path, "a")["version"]
    registry.promote(ws, v1)
    with pytest.raises(registry.RegistryError, match="no parent"):
        registry.rollback(ws)


def test_lineage_needs_tracked_data_and_a_registered_parent(ws, tmp_path):
    with pytest.raises(registry.RegistryError, match=r"data versions of \['2026-01-02'\] are missing"):
        registry.register(ws, _model(tmp_path, "a", b"a"), parent=None, data_versions={"2026-01-02": None},
                          params={}, metrics={})
    with pytest.raises(registry.RegistryError, match="parent 'v0007' is not a registered version"):
        registry.register(ws, _model(tmp_path, "b", b"b"), parent="v0007", data_versions={"d": "x.dir"},
                          params={}, metrics={})
    assert registry.load_registry(ws) == [] and not ws.versions.exists()


def test_registered_state_json_records_the_registry_lineage(ws, tmp_path):
    v1 = _register(ws, tmp_path, "a")
    model = _model(tmp_path, "b", b"b")
    (model / "state.json").write_text(json.dumps({"parent": str(tmp_path / "models" / "versions" / "v0001"),
                                                  "data_versions": {"2026-01-02": None}, "step": 4}))
    v2 = registry.register(ws, model, parent=v1["version"], data_versions={"2026-01-02": "def.dir"}, params={},
                           metrics={})
    state = json.loads((ws.root / v2["path"] / "state.json").read_text())
    assert state["step"] == 4 and state["version"] == v2["version"]
    assert state["parent"] == v2["parent"] == "v0001"
    assert state["data_versions"] == v2["data_versions"] == {"2026-01-02": "def.dir"}
    assert state["all_data_versions"] == v2["all_data_versions"] == {"2026-01-01": "abc.dir", "2026-01-02": "def.dir"}
