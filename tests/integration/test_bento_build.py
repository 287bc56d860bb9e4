"""The packaged bento, not the source tree: `liveloop package` builds it, `bentoml serve <tag>` serves it from a folder
without the sources (recommend + the demo page, whose static files must be inside the bento). The same build with
serve.gpu emits BentoML's CUDA image and one GPU in the service's resources; the bf16 towers are checked on the CPU
against float32 and, where a GPU is, on cuda."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.integration.conftest import BIN, REPO, free_port, running
from tests.integration.test_serving import build_workspace, day_batch


def _package(root: Path, params: Path) -> str:
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml-home"), "LIVELOOP_PARAMS": str(params)}
    done = subprocess.run([str(BIN / "liveloop"), "package", "--params", str(params)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return re.search(r"bento (liveloop:\w+)", done.stdout).group(1)


def _bento_info(root: Path, tag: str) -> tuple[Path, dict, str]:
    """The bento's folder, its bento.yaml and the base image of its Dockerfile."""
    folder = root / "bentoml-home" / "bentos" / "liveloop" / tag.split(":")[1]
    dockerfile = (folder / "env" / "docker" / "Dockerfile").read_text()
    return folder, yaml.safe_load((folder / "bento.yaml").read_text()), re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)


@pytest.mark.slow
def test_bentoml_serve_of_the_built_bento_and_the_gpu_variant(tmp_path):
    params = build_workspace(tmp_path, REPO / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    raw["serve"].update({"now": "latest"})
    params.write_text(yaml.safe_dump(raw))
    tag = _package(tmp_path, params)
    folder, info, base_image = _bento_info(tmp_path, tag)
    assert (folder / "src" / "liveloop" / "serving" / "static" / "demo.js").is_file()
    assert info["args"] == {"gpu": False} and base_image.startswith("python:") and "cuda" not in base_image
    assert "lightgbm" in info["image"]["python_requirements"]
    assert not info["services"][0]["config"].get("resources")

    elsewhere = tmp_path / "elsewhere"  # no sources, no params.yaml: only the bento and LIVELOOP_PARAMS
    elsewhere.mkdir()
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml-home"), "LIVELOOP_PARAMS": str(params)}
    base = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    with running(cmd, elsewhere, env, f"{base}/readyz", tmp_path / "bento-serve.log"):
        body = httpx.post(f"{base}/recommend", json={"user_id": "u-kitchen-1", "k": 3}, timeout=60).json()
        assert body["cold_start"] is False and len(body["items"]) == 3
        assert "demo.js" in httpx.get(f"{base}/demo/").text
        assert httpx.get(f"{base}/demo/static/demo.js").status_code == 200

    raw["serve"]["gpu"] = True
    params.write_text(yaml.safe_dump(raw))
    gpu_tag = _package(tmp_path, params)
    _, gpu_info, gpu_image = _bento_info(tmp_path, gpu_tag)
    assert gpu_tag != tag and gpu_info["args"] == {"gpu": True}
    assert gpu_image.startswith("nvidia/cuda:12.")
    assert gpu_info["services"][0]["config"]["resources"] == {"gpu": 1}


def _served_vectors(model) -> tuple[np.ndarray, np.ndarray]:
    from liveloop.model.history import Histories

    batch = day_batch()
    hist = Histories.from_events(batch["events"], batch["streams"])
    users = sorted(batch["events"]["user_id"].unique())
    now = batch["events"]["ts"].max().value + 1
    states = [hist.state_at(u, now, model.config.history_window) for u in users]
    base = np.random.default_rng(0).normal(size=(40, model.encoder.dim)).astype(np.float32)
    return model.item_vectors(base), model.user_vectors(states, lambda ids: base[[int(i[1:]) % 40 for i in ids]])


def _fresh_model(tmp_path: Path, device: str):
    from liveloop.config import ModelConfig
    from liveloop.model.recommender import Recommender

    Recommender.from_config(ModelConfig(seq_dim=16, history_window=10), device="cpu", seed=0).save(tmp_path / "m")
    return Recommender.load(tmp_path / "m", device=device)


def test_bf16_towers_match_float32(tmp_path):
    """serve_bf16 on the CPU (torch runs bf16 there too): same vectors as float32 up to bf16 rounding."""
    import torch

    from liveloop.serving.gpu import apply_serve_precision, serve_bf16

    model = _fresh_model(tmp_path, "cpu")
    want_items, want_users = _served_vectors(model)
    assert apply_serve_precision(model, gpu=True) == "float32"  # no CUDA device: float32 stays
    serve_bf16(model)
    assert {p.dtype for p in model.net.parameters()} == {torch.bfloat16}
    got_items, got_users = _served_vectors(model)
    assert got_items.dtype == np.float32 and got_users.dtype == np.float32
    np.testing.assert_allclose(got_items, want_items, atol=2e-2)
    np.testing.assert_allclose(got_users, want_users, atol=3e-2)
    assert np.abs(got_users - want_users).max() > 0  # it really ran in bf16


@pytest.mark.gpu
def test_serve_gpu_holds_bf16_towers_on_cuda(tmp_path):
    import torch

    from liveloop.serving.gpu import apply_serve_precision

    want_items, want_users = _served_vectors(_fresh_model(tmp_path, "cpu"))
    model = _fresh_model(tmp_path, "cuda")
    assert apply_serve_precision(model, gpu=True) == "bfloat16"
    assert {(p.device.type, p.dtype) for p in model.net.parameters()} == {("cuda", torch.bfloat16)}
    got_items, got_users = _served_vectors(model)
    np.testing.assert_allclose(got_items, want_items, atol=2e-2)
    np.testing.assert_allclose(got_users, want_users, atol=3e-2)
