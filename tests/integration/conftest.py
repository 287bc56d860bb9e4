"""A tiny but complete workspace (git + params.yaml with small sizes) for end-to-end tests of the loop."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "simulate": {"days": 3, "n_users": 80, "n_items": 60, "n_hosts": 4, "rooms_per_day": 3, "items_per_room": 15},
    "validation": {"min_events": 5},
    "model": {"history_window": 10, "seq_dim": 16},
    "train": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "warmup_steps": 0, "eval_every": 2, "rank_trees": 20},
    "evaluate": {"max_users": 40, "bootstrap_samples": 50, "mf_iterations": 2, "mf_factors": 8},
    "drift": {"embedding_sample": 30, "eval_users": 20, "max_rows": 2000},
    "loop": {"package": False},
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_params(root: Path, **sections) -> Path:
    """params.yaml in `root`: the repo's params with TINY sizes and any extra section overrides merged in."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = _merge(_merge(params, TINY), sections)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def tiny_workspace(tmp_path: Path) -> Path:
    """A git repo with a tiny params.yaml; returns the params path (the workspace root is its folder)."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return write_params(tmp_path)
