"""`dvc repro` for real, in a temporary git repository holding this project's files with tiny params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO, TINY, _merge

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture
def project_clone(tmp_path: Path) -> Path:
    """The project's tracked and not-ignored files (what a clone of the working tree holds), committed in a new repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    root = tmp_path / "clone"
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    params = _merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"], root)
    return root


def test_dvc_repro_builds_the_pipeline_and_reruns_only_what_changed(project_clone: Path):
    dvc = [str(BIN / "dvc")]
    out = _run(dvc + ["repro"], project_clone)
    for stage in ("simulate", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out, out[-3000:]
    metrics = json.loads((project_clone / "metrics" / "eval.json").read_text())
    first = metrics["models"]["model"]["ndcg@10"]
    assert 0.0 <= first <= 1.0
    assert len(list((project_clone / "data" / "pipeline" / "accepted").iterdir())) >= 3

    assert "up to date" in _run(dvc + ["repro"], project_clone).lower()

    shown = json.loads(_run(dvc + ["metrics", "show", "--json"], project_clone))
    assert "metrics/eval.json" in json.dumps(shown)
    _run(dvc + ["plots", "show", "-o", "plots_out"], project_clone)
    assert (project_clone / "plots_out" / "index.html").exists()

    # an evaluation-only parameter reruns evaluation alone
    params = yaml.safe_load((project_clone / "params.yaml").read_text())
    params["evaluate"]["max_users"] = params["evaluate"]["max_users"] - 1
    (project_clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(dvc + ["repro"], project_clone)
    assert "Running stage 'evaluate'" in out
    assert "Running stage 'train'" not in out and "Running stage 'simulate'" not in out

    # retraining from the same data and params rebuilds the same metrics (deterministic on CPU)
    params["evaluate"]["max_users"] += 1
    (project_clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(dvc + ["repro", "--force", "train"], project_clone)
    _run(dvc + ["repro"], project_clone)
    again = json.loads((project_clone / "metrics" / "eval.json").read_text())["models"]["model"]["ndcg@10"]
    assert again == pytest.approx(first, abs=1e-6)
