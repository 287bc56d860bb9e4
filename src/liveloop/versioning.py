"""DVC adapter: version accepted batches and promoted models, and push them to the remote.

Uses the `dvc` command line of this environment (the public, stable interface). A workspace that is not yet a
DVC repo gets `dvc init` (plus `--no-scm` outside git) and the default local remote inside the state folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from liveloop.workspace import Workspace


class VersioningError(RuntimeError):
    """A DVC command failed; the message carries DVC's own output."""


def _dvc(ws: Workspace, *args: str, timeout: int = 600) -> str:
    cmd = [sys.executable, "-m", "dvc", *args]
    proc = subprocess.run(cmd, cwd=ws.root, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise VersioningError(f"`dvc {' '.join(args)}` failed in {ws.root}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def ensure_repo(ws: Workspace) -> None:
    """Make ws.root a DVC repo with a default local remote under the state folder (idempotent)."""
    if not (ws.root / ".dvc").is_dir():
        in_git = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ws.root, capture_output=True,
                                text=True).returncode == 0
        _dvc(ws, "init", "-q", *([] if in_git else ["--no-scm"]))
    remotes = _dvc(ws, "remote", "list")
    if not remotes.strip():
        ws.dvc_remote.mkdir(parents=True, exist_ok=True)
        _dvc(ws, "remote", "add", "-d", "local", str(ws.dvc_remote))


def track(ws: Workspace, path: Path, push: bool = True) -> str:
    """`dvc add` a folder or file (and push it); returns its DVC md5, the data version recorded in lineage."""
    ensure_repo(ws)
    path = Path(path).resolve()
    rel = path.relative_to(ws.root.resolve())
    _dvc(ws, "add", "-q", str(rel))
    dvc_file = path.with_name(path.name + ".dvc")
    if push:
        _dvc(ws, "push", "-q", str(dvc_file.relative_to(ws.root.resolve())))
    return data_version(dvc_file)


def content_version(path: Path) -> str:
    """The md5 `dvc add` would record for `path` (DVC's own hashing, dvc_data), without adding or pushing it: what
    the loop records inside `dvc repro`, whose dvc.lock versions the stage's outputs (a `dvc add` there would nest
    a second DVC repo in the stage's output)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(MemoryFileSystem(), "/staging"), fs.abspath(str(path)), fs, "md5", dry_run=True)
    return obj.hash_info.value


def version_of(ws: Workspace, path: Path, dvc_add: bool = True) -> str:
    """The data version the loop records for `path`: `dvc add` and push it (track), or, with dvc_add False, only
    its md5 (content_version)."""
    return track(ws, path) if dvc_add else content_version(path)


def data_version(dvc_file: Path) -> str:
    """The md5 DVC recorded for a tracked path."""
    meta = yaml.safe_load(Path(dvc_file).read_text())
    return meta["outs"][0]["md5"]
