"""The GPU deployment, one setting (`serve.gpu` in params.yaml): the bento gets BentoML's CUDA image and one GPU in
its service resources, and the service holds the recommender's towers in bf16 on the device when CUDA is there.
CPU stays the default: with `serve.gpu: false` nothing here changes the bento or the model.

The build passes the setting as a bento argument (`gpu`), which BentoML stores in the bento and restores before the
service module is imported by `bentoml serve <tag>`, so the service's resources follow the build it came from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

CUDA_VERSION = "12.6"  # BentoML's CUDA base image for the GPU bento (torch's PyPI wheels bundle their CUDA runtime)
GPU_ARG = "gpu"

log = logging.getLogger("liveloop.serving")


def gpu_build(bentofile: Path, out: Path) -> Path:
    """bentofile.yaml with BentoML's CUDA image, written to `out` (the build context stays the same)."""
    spec = yaml.safe_load(Path(bentofile).read_text())
    spec.setdefault("docker", {})["cuda_version"] = CUDA_VERSION
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def gpu_requested(value) -> bool:
    """A bento argument as a flag: True/False from a build, "true"/"false" from `--arg gpu=...`."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if value is None or str(value).lower() in ("false", "0", "no", ""):
        return False
    raise ValueError(f"bento argument {GPU_ARG}={value!r} is not a flag (true or false)")


def service_resources() -> dict:
    """The service's resources from the bento arguments: one GPU for a GPU build, nothing declared otherwise."""
    import bentoml

    return {"gpu": 1} if gpu_requested(getattr(bentoml.use_arguments(), GPU_ARG, None)) else {}


def serve_bf16(model) -> None:
    """Hold the recommender's towers in bf16 (inputs cast on the way in; outputs are read back as float32 by the
    Recommender). The frozen text encoder and its vector cache stay float32 so cached vectors keep matching."""
    import torch

    net = model.net.to(torch.bfloat16)
    items, users = net.items, net.users

    def items_bf16(base: torch.Tensor) -> torch.Tensor:
        return items(base.to(torch.bfloat16))

    def users_bf16(vecs: torch.Tensor, types: torch.Tensor, ages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return users(vecs.to(torch.bfloat16), types, ages, mask)

    net.items, net.users = items_bf16, users_bf16


def apply_serve_precision(model, gpu: bool) -> str:
    """`serve.gpu`: bf16 towers when the model sits on a CUDA device; float32 otherwise. Returns the dtype used."""
    if not gpu:
        return "float32"
    if model.device.type != "cuda":
        log.warning("serve.gpu is set but the model is on %s (no CUDA device): serving in float32", model.device)
        return "float32"
    serve_bf16(model)
    return "bfloat16"
