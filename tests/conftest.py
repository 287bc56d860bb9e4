"""Shared fixtures. Tool state goes to a per-session temp folder; nothing touches ~ or the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = REPO.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"


def pytest_configure(config):
    """Same quiet, offline tool environment the project uses, with state in a temp folder instead of the repo."""
    from liveloop.workspace import Workspace

    state = Path(os.environ.get("LIVELOOP_TEST_STATE", "/tmp/liveloop-test-state"))
    for key, value in Workspace(root=REPO, state=state).tool_env().items():
        os.environ.setdefault(key, value)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """A copy of the repo's params.yaml inside a temp workspace root (so stages write under tmp_path)."""
    dst = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", dst)
    return dst


@pytest.fixture
def online_retail_path() -> Path:
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"Online Retail data not found at {ONLINE_RETAIL}")
    return ONLINE_RETAIL
