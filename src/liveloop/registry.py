"""Model registry: every trained version with its lineage, and the champion pointer.

The champion is whatever `models/champion.json` names; promotion and rollback replace that file atomically
(write a temp file, fsync, os.replace), so a reader (the service, a flow) sees the old champion or the new one,
never a half-written state. A rejected or failed candidate never touches the pointer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from liveloop.fsutil import atomic_write_json, staged_dir
from liveloop.workspace import Workspace

STATE_FILE = "state.json"  # the model folder's own record (liveloop.model.recommender.STATE_FILE)


class RegistryError(RuntimeError):
    """The registry or champion pointer is missing or names something that does not exist."""


@contextmanager
def _locked(ws: Workspace):
    """Serialise registry writers (two flows finishing at once must not drop an entry)."""
    ws.models.mkdir(parents=True, exist_ok=True)
    with open(ws.models / ".registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_registry(ws: Workspace) -> list[dict]:
    if not ws.registry_file.exists():
        return []
    return json.loads(ws.registry_file.read_text())["versions"]


def _save_registry(ws: Workspace, versions: list[dict]) -> None:
    atomic_write_json(ws.registry_file, {"versions": versions})


def get_version(ws: Workspace, version: str) -> dict:
    for entry in load_registry(ws):
        if entry["version"] == version:
            return entry
    known = ", ".join(e["version"] for e in load_registry(ws)) or "none"
    raise RegistryError(f"model version {version!r} is not in {ws.registry_file} (known: {known})")


def champion_dir(ws: Workspace) -> Path | None:
    """Folder of the serving model, or None before the first promotion."""
    if not ws.champion_pointer.exists():
        return None
    pointer = json.loads(ws.champion_pointer.read_text())
    path = ws.root / pointer["path"]
    if not path.exists():
        raise RegistryError(f"champion pointer {ws.champion_pointer} names {path}, which does not exist")
    return path


def champion_version(ws: Workspace) -> str | None:
    if not ws.champion_pointer.exists():
        return None
    return json.loads(ws.champion_pointer.read_text())["version"]


def git_rev(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


def _stamp_lineage(model_dir: Path, entry: dict) -> None:
    """Write the registry's lineage into the registered copy's state.json, so the model folder (and what is packaged
    from it) records the same parent version and data versions as registry.json."""
    state_file = model_dir / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    state.update(version=entry["version"], parent=entry["parent"], data_versions=entry["data_versions"],
                 all_data_versions=entry["all_data_versions"])
    atomic_write_json(state_file, state)


def register(ws: Workspace, model_dir: Path, *, parent: str | None, data_versions: dict, params: dict,
             metrics: dict, flow_run_id: str | None = None, gate: list[dict] | None = None) -> dict:
    """Copy a trained model folder into models/versions/vNNNN and record its lineage; returns the entry.

    data_versions: batch day -> DVC md5 of the accepted batches trained on (never None); parent: the version it was
    warm-started from. Registering the same folder with the same weights again returns the existing entry, so a
    retried commit does not create a second version.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").exists():
        raise RegistryError(f"{model_dir} is not a model folder (no model.safetensors)")
    untracked = sorted(day for day, md5 in data_versions.items() if not md5)
    if untracked:
        raise RegistryError(f"data versions of {untracked} are missing: track the batches with DVC before registering")
    digest = _weights_digest(model_dir)
    with _locked(ws):
        versions = load_registry(ws)
        for entry in versions:
            if entry.get("source") == str(model_dir) and entry.get("weights_sha256") == digest:
                return entry
        known = {e["version"]: e for e in versions}
        if parent is not None and parent not in known:
            raise RegistryError(f"parent {parent!r} is not a registered version (known: {', '.join(known) or 'none'})")
        inherited = {}
        if parent is not None:
            inherited = known[parent].get("all_data_versions") or known[parent]["data_versions"]
        version = f"v{len(versions) + 1:04d}"
        dest = ws.versions / version
        entry = {
            "version": version,
            "path": str(dest.relative_to(ws.root)),
            "source": str(model_dir),
            "weights_sha256": digest,
            "parent": parent,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data_versions": data_versions,
            "all_data_versions": {**inherited, **data_versions},
            "params": params,
            "metrics": metrics,
            "gate": gate or [],
            "flow_run_id": flow_run_id,
            "git_rev": git_rev(ws.root),
            "status": "candidate",
            "decision": [],
        }
        if dest.exists():  # not in the registry: the copy of a register killed before it recorded the entry
            shutil.rmtree(dest)
        with staged_dir(dest) as staging:  # the version folder appears whole or not at all
            shutil.copytree(model_dir, staging, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint*", "optimizer.safetensors"))
            _stamp_lineage(staging, entry)
        versions.append(entry)
        _save_registry(ws, versions)
    return entry


def _set_status(ws: Workspace, version: str, status: str, reasons: list[str]) -> None:
    with _locked(ws):
        versions = load_registry(ws)
        for entry in versions:
            if entry["version"] == version:
                entry["status"] = status
                entry["decision"] = reasons
            elif status == "champion" and entry["status"] == "champion":
                entry["status"] = "retired"
        _save_registry(ws, versions)


def promote(ws: Workspace, version: str, reasons: list[str] | None = None) -> Path:
    """Make `version` the champion: one atomic pointer swap. Returns the champion folder."""
    entry = get_version(ws, version)
    path = ws.root / entry["path"]
    if not (path / "model.safetensors").exists():
        raise RegistryError(f"cannot promote {version}: {path} holds no model.safetensors")
    atomic_write_json(ws.champion_pointer, {"version": version, "path": entry["path"],
                                             "promoted": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    _set_status(ws, version, "champion", reasons or ["promoted"])
    return path


def reject(ws: Workspace, version: str, reasons: list[str]) -> None:
    """Record that the gate turned a candidate down; the champion pointer is not touched."""
    _set_status(ws, version, "rejected", reasons)


def rollback(ws: Workspace, version: str | None = None) -> str:
    """Restore an earlier champion: `version`, or the current champion's parent. Returns the new champion."""
    if version is None:
        current = champion_version(ws)
        if current is None:
            raise RegistryError("there is no champion to roll back from")
        version = get_version(ws, current)["parent"]
        if version is None:
            raise RegistryError(f"champion {current} has no parent to roll back to; name a version explicitly")
    promote(ws, version, reasons=["rollback"])
    return version
