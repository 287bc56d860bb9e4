"""Typed configuration over params.yaml.

Every stage receives the part of the config it needs as an argument; nothing reads params.yaml behind
the caller's back. A bad value fails with the dotted path of the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


Scenario = Literal["stable", "seasonal-shift", "new-category", "price-shock", "host-churn", "comment-shift"]


class PathsConfig(_Section):
    root: Path = Path(".")
    state: Path = Path(".liveloop")

    def resolve(self, base: Path) -> "PathsConfig":
        root = (base / self.root).resolve() if not self.root.is_absolute() else self.root
        state = self.state if self.state.is_absolute() else root / self.state
        return PathsConfig(root=root, state=state)


class SimulateConfig(_Section):
    days: int = Field(4, ge=1, le=3650)
    scenario: Scenario = "stable"
    drift_day: int | None = Field(None, ge=0)
    start_date: str = "2026-01-05"
    n_users: int = Field(600, ge=10)
    n_items: int = Field(400, ge=20)
    n_hosts: int = Field(12, ge=1)
    rooms_per_day: int = Field(8, ge=1)
    items_per_room: int = Field(25, ge=1)
    sessions_per_user_per_day: float = Field(0.6, gt=0)


class ValidateConfig(_Section):
    max_text_length: int = Field(2000, ge=1)
    min_events: int = Field(10, ge=0)
    max_events: int = Field(5_000_000, ge=1)
    max_future_minutes: int = Field(5, ge=0)


class Config(_Section):
    seed: int = 7
    paths: PathsConfig = PathsConfig()
    simulate: SimulateConfig = SimulateConfig()
    validation: ValidateConfig = ValidateConfig()


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or holds a bad value."""


def load_config(path: str | Path = "params.yaml", overrides: dict | None = None) -> Config:
    """Load params.yaml (paths resolved against its folder) and apply dotted overrides like {"train.steps": 5}."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise ConfigError(f"bad value in {path}: {problems}") from None
    cfg.paths = cfg.paths.resolve(path.resolve().parent)
    return cfg
