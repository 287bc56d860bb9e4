"""Crash-safe file writes: a reader, or the next run after a SIGKILL or power loss, sees the old content or the new,
never a half-written file or folder.

Files: write a temp sibling, fsync it, os.replace it over the target, fsync the folder (the rename itself is only
durable once the folder entry is on disk). Folders: fill a hidden staging sibling, fsync its files, rename it into
place; a staging folder left by a killed writer is removed by the next writer of the same target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STAGING = ".staging-"  # staging folders are hidden: `.{name}.staging-XXXX` next to the target


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode())


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def remove_staging(dest: Path) -> list[Path]:
    """Remove staging folders of `dest` left by killed writers; call it while holding the writers' lock."""
    dest = Path(dest)
    leftovers = sorted(dest.parent.glob(f".{dest.name}{STAGING}*")) if dest.parent.exists() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without an error it becomes `dest` in one rename.

    `dest` must not exist (os.rename will not replace a non-empty folder, and a half-replaced version is exactly
    what this avoids). On an error the staging folder is removed and `dest` is untouched."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; a staged folder never replaces one")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_staging(dest)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}{STAGING}"))
    try:
        yield staging
        _fsync_tree(staging)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(dest.parent)
