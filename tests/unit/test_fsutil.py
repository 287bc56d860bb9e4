"""fsutil: atomic files and staged folders, including under SIGKILL of the writer."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from liveloop import fsutil


def test_atomic_write_json_replaces_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "sub" / "state.json"
    fsutil.atomic_write_json(target, {"v": 1})
    fsutil.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_staged_dir_appears_whole_or_not_at_all(tmp_path: Path):
    dest = tmp_path / "versions" / "v0001"
    with fsutil.staged_dir(dest) as staging:
        (staging / "model.safetensors").write_bytes(b"w")
        assert not dest.exists(), "the target must not exist before the block ends"
    assert (dest / "model.safetensors").read_bytes() == b"w"
    with pytest.raises(FileExistsError, match="v0001"):
        with fsutil.staged_dir(dest):
            pass
    failed = tmp_path / "versions" / "v0002"
    with pytest.raises(RuntimeError, match="boom"):
        with fsutil.staged_dir(failed) as staging:
            (staging / "half").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not failed.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["v0001"], "a failed stage left something behind"


def test_the_next_writer_removes_a_killed_writers_staging(tmp_path: Path):
    dest = tmp_path / "v0003"
    (tmp_path / f".v0003{fsutil.STAGING}dead").mkdir()
    (tmp_path / f".v0004{fsutil.STAGING}other").mkdir()  # another target's staging is not ours to remove
    with fsutil.staged_dir(dest) as staging:
        (staging / "f").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".v0004{fsutil.STAGING}other", "v0003"]


def _rewrite_forever(target: str, folder: str) -> None:
    payload = {"rows": list(range(20_000))}
    for n in range(100_000):
        fsutil.atomic_write_json(Path(target), {**payload, "n": n})
        with fsutil.staged_dir(Path(folder) / f"d{n:05d}") as staging:
            for i in range(5):
                (staging / f"part{i}").write_bytes(b"x" * 50_000)


def test_sigkill_never_leaves_a_torn_file_or_folder(tmp_path: Path):
    target, folder = tmp_path / "registry.json", tmp_path / "dirs"
    fsutil.atomic_write_json(target, {"n": -1})
    ctx, rng = multiprocessing.get_context("fork"), random.Random(5)
    for trial in range(20):
        child = ctx.Process(target=_rewrite_forever, args=(str(target), str(folder)))
        child.start()
        time.sleep(rng.uniform(0.01, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert "n" in json.loads(target.read_text())  # parses: the old content or the new, never a torn write
        for d in folder.iterdir() if folder.exists() else []:
            if not d.name.startswith("."):
                assert sorted(p.name for p in d.iterdir()) == [f"part{i}" for i in range(5)], f"{d} is partial"
        for d in list(folder.glob("d[0-9]*")):
            os.rename(d, folder / f"done-{trial}-{d.name}")  # the next child starts again at d00000
    assert len(list(folder.glob("done-*"))) > 0, "no child ever completed a folder: the kills came too early"
