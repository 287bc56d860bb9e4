"""Shared fixtures. Tool state goes to a per-session temp folder; nothing touches ~ or the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = REPO.parent / "shared" / "data" / "online_retail" / "online_retail.parquet"


def pytest_configure(config):
    state = Path(os.environ.get("LIVELOOP_TEST_STATE", "/tmp/liveloop-test-state"))
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HOME": str(state / "hf"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
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
