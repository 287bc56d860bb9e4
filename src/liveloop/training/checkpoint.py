"""Resumable checkpoints: a full model dir plus optimizer.safetensors, written to a temp folder and renamed into place,
so a run killed at any moment leaves either the previous checkpoint or the new one, never half of one.

Layout: OUT/checkpoints/step-000010/ (model dir + optimizer). Only the newest is kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from liveloop.model.recommender import STATE_FILE, Recommender

CHECKPOINTS = "checkpoints"
OPTIMIZER_FILE = "optimizer.safetensors"
OPTIMIZER_GROUPS = "optimizer.json"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors (safetensors) + JSON param groups; no pickle."""
    sd = optimizer.state_dict()
    tensors = {
        f"{idx}.{name}": (value if torch.is_tensor(value) else torch.tensor(value)).detach().cpu().contiguous()
        for idx, per_param in sd["state"].items()
        for name, value in per_param.items()
    }
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(optimizer: torch.optim.Optimizer, model_dir: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(model_dir / OPTIMIZER_FILE))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = json.loads((model_dir / OPTIMIZER_GROUPS).read_text())["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_model_dir(rec: Recommender, optimizer: torch.optim.Optimizer, out: Path) -> None:
    """Model dir + optimizer state in `out` (used for checkpoints and the final model)."""
    from safetensors.torch import save_file

    rec.save(out)
    tensors, groups = optimizer_tensors(optimizer)
    save_file(tensors, str(out / OPTIMIZER_FILE))
    (out / OPTIMIZER_GROUPS).write_text(json.dumps(groups))


def save_checkpoint(rec: Recommender, optimizer: torch.optim.Optimizer, out_dir: Path, step: int) -> Path:
    root = out_dir / CHECKPOINTS
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model_dir(rec, optimizer, tmp)
    os.replace(tmp, final)
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    """Newest complete checkpoint under out_dir (temp folders of a killed save are ignored)."""
    root = Path(out_dir) / CHECKPOINTS
    done = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists() and (p / OPTIMIZER_FILE).exists())
    return done[-1] if done else None


def drop_checkpoints(out_dir: Path) -> None:
    shutil.rmtree(Path(out_dir) / CHECKPOINTS, ignore_errors=True)
