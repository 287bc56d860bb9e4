"""Where everything lives inside a workspace root, and the environment that keeps tool state there.

One object owns the layout so stages, flows, DVC stages and tests agree on paths; tests point it at a tmp dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path
    state: Path

    @classmethod
    def from_config(cls, cfg) -> "Workspace":
        return cls(root=Path(cfg.paths.root), state=Path(cfg.paths.state))

    # data
    @property
    def incoming(self) -> Path:  # new batches land here (simulator, importers, feedback export)
        return self.root / "data" / "incoming"

    @property
    def accepted(self) -> Path:  # batches that passed the validation gate, one DVC-tracked folder each
        return self.root / "data" / "accepted"

    @property
    def quarantine(self) -> Path:  # rejected batches, untouched, with report.json and report.md
        return self.root / "data" / "quarantine"

    @property
    def splits(self) -> Path:  # train head / held-out tail of each accepted batch (derived, not versioned)
        return self.root / "data" / "splits"

    @property
    def feedback(self) -> Path:  # /feedback events appended by the service, exported as the next batch
        return self.root / "data" / "feedback"

    @property
    def simulator_truth(self) -> Path:  # hidden ground truth of the simulator (oracle evaluation only)
        return self.root / "data" / "simulator"

    # models
    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def registry_file(self) -> Path:
        return self.models / "registry.json"

    @property
    def champion_pointer(self) -> Path:
        return self.models / "champion.json"

    @property
    def versions(self) -> Path:
        return self.models / "versions"

    @property
    def candidates(self) -> Path:
        return self.models / "candidates"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    # tool state
    @property
    def prefect_home(self) -> Path:
        return self.state / "prefect"

    @property
    def bentoml_home(self) -> Path:
        return self.state / "bentoml"

    @property
    def dvc_remote(self) -> Path:
        return self.state / "dvc-remote"

    def tool_env(self) -> dict[str, str]:
        """Environment that keeps every tool's state in the workspace and turns telemetry off."""
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "BENTOML_HOME": str(self.bentoml_home),
            "HF_HOME": str(self.state / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # a busy machine can take well over the default 20 s to start the first flow's ephemeral API server
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "DVC_NO_ANALYTICS": "1",
            "BENTOML_DO_NOT_TRACK": "true",
            "GX_ANALYTICS_ENABLED": "false",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def apply_env(self) -> None:
        """Export tool_env() for this process and its children; existing values win so users can override."""
        for key, value in self.tool_env().items():
            os.environ.setdefault(key, value)
        for home in ("PREFECT_HOME", "BENTOML_HOME", "HF_HOME"):  # sqlite and the model store need the folder
            Path(os.environ[home]).mkdir(parents=True, exist_ok=True)


def open_workspace(params_path: str | Path = "params.yaml", overrides: dict | None = None):
    """Load params.yaml (plus dotted `overrides`, see load_config) and return (config, workspace) with tool state
    pointed inside the workspace."""
    from liveloop.config import load_config

    cfg = load_config(params_path, overrides)
    ws = Workspace.from_config(cfg)
    ws.apply_env()
    return cfg, ws
