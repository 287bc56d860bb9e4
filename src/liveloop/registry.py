"""Model registry: every trained version with its lineage, and the champion pointer.

The champion is whatever `models/champion.json` names; promotion and rollback replace that file atomically
(write a temp file, os.replace), so a reader sees the old champion or the new one, never a half-written state.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from liveloop.workspace import Workspace


class RegistryError(RuntimeError):
    """The registry or champion pointer is missing or names something that does not exist."""


def _atomic_write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
