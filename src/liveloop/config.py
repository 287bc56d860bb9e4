"""Typed configuration over params.yaml.

Every stage receives the part of the config it needs as an argument; nothing reads params.yaml behind
the caller's back. A bad value fails with the dotted path of the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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
    start_date: str = Field("2026-01-05", pattern=r"^\d{4}-\d{2}-\d{2}$")
    n_users: int = Field(600, ge=10)
    n_items: int = Field(400, ge=20)
    n_hosts: int = Field(12, ge=1)
    rooms_per_day: int = Field(8, ge=1)
    items_per_room: int = Field(25, ge=1)
    sessions_per_user_per_day: float = Field(0.6, gt=0)
    impressions_per_session: int = Field(8, ge=1)
    new_item_fraction: float = Field(0.2, ge=0, le=0.5)
    comment_rate: float = Field(0.25, ge=0, le=1)


class ValidateConfig(_Section):
    max_text_length: int = Field(2000, ge=1)
    min_events: int = Field(10, ge=0)
    max_events: int = Field(5_000_000, ge=1)
    max_future_minutes: int = Field(5, ge=0)


class LoopConfig(_Section):
    """How the continuous-training loop treats each new batch (flows/live_loop.py)."""

    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    retrain_every: int = Field(1, ge=0)
    reference_window: int = Field(3, ge=1)
    package: bool = True
    cron: str = "*/30 * * * *"
    task_runner: Literal["threads", "dask"] = "threads"
    threads: int = Field(2, ge=1)
    dask_address: str | None = None
    dask_workers: int = Field(2, ge=1)
    baselines: bool = True
    monitor_cron: str = "0 * * * *"
    feedback_cron: str = "5 0 * * *"


class ServeConfig(_Section):
    """The BentoML service: request caps, retrieval, batching, hot reload (src/liveloop/serving)."""

    now: Literal["latest"] | None = None
    max_k: int = Field(100, ge=1, le=10_000)
    max_item_ids: int = Field(1000, ge=1)
    max_events_per_request: int = Field(500, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    history_keep_events: int = Field(500, ge=1)
    ann_threshold: int = Field(100_000, ge=1)
    max_batch_rows: int = Field(64, ge=1)
    reload_poll_seconds: float = Field(5.0, gt=0)
    torch_threads: int = Field(1, ge=0, le=256)
    gpu: bool = False  # GPU deployment: CUDA bento with a GPU resource, towers in bf16 on cuda (serving/gpu.py)


class ModelConfig(_Section):
    """Architecture of the recommender; saved with every model (config.json), so serving reads the same window."""

    encoder: str = "all-MiniLM-L6-v2"  # built-in offline copy, or a local path / cached Hugging Face id (frozen)
    temperature: float = Field(0.05, gt=0, le=10)
    history_window: int = Field(50, ge=1, le=1000)  # newest events the user tower reads (training = serving)
    seq_dim: int = Field(64, ge=8, le=1024)
    seq_layers: int = Field(2, ge=0, le=12)
    seq_heads: int = Field(2, ge=1, le=16)
    dropout: float = Field(0.0, ge=0, lt=1)
    popularity_days: int = Field(30, ge=1, le=3650)  # ranker feature; evaluation's baselines use the same window
    rank_candidates: int = Field(300, ge=10)  # big catalogues: own items + this many best by retrieval are ranked


class TrainConfig(_Section):
    """How one update goes: the user tower on cached vectors (stage 1), then the ranker (stage 2)."""

    init_from: str = "champion"
    steps: int = Field(0, ge=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    bf16: bool = False
    replay_ratio: float = Field(0.5, ge=0, lt=1)
    max_examples: int = Field(30_000, ge=1)
    max_negatives: int = Field(2048, ge=16)
    purchase_weight: float = Field(3.0, gt=0)
    cart_weight: float = Field(2.0, gt=0)
    click_weight: float = Field(1.0, gt=0)
    context_days: int = Field(30, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    device: str = "auto"
    validation: float = Field(0.15, ge=0, lt=1)
    validation_confidence: float = Field(0.8, ge=0.5, lt=1)
    eval_every: int = Field(50, ge=1)
    rank_cuts: list[float] = Field([0.0, 0.5, 0.8], min_length=1)
    rank_days: int = Field(14, ge=1)
    rank_trees: int = Field(300, ge=1)
    rank_leaves: int = Field(31, ge=2)
    rank_lr: float = Field(0.05, gt=0)
    max_rank_groups: int = Field(4000, ge=10)
    rank_half_life_days: float | None = Field(None, gt=0)
    max_ctr_rows: int = Field(100_000, ge=100)


class DriftThresholds(_Section):
    """The retrain policy: a batch drifts when any signal crosses its threshold (src/liveloop/monitoring/policy.py)."""

    drifted_share: float = Field(0.5, gt=0, le=1)
    column_drift: dict[str, float] = Field(
        default_factory=lambda: {
            "category": 0.4,
            "event_type": 0.08,
            "host_id": 0.6,
            "price": 0.45,
            "events_per_user": 0.3,
            "session_minutes": 0.5,
        }
    )
    new_value_share: dict[str, float] = Field(default_factory=lambda: {"category": 0.05, "host_id": 0.3})
    rotating_columns: list[str] = Field(default_factory=lambda: ["category", "host_id", "price"])
    repriced_share: float = Field(0.1, gt=0, le=1)
    embedding_auc: dict[str, float] = Field(default_factory=lambda: {"items": 0.9, "users": 0.8, "comments": 0.8})
    interest_drop: float = Field(0.4, gt=0, le=1)
    prediction_drift: float = Field(0.3, gt=0)
    ndcg_drop: float = Field(0.2, gt=0, le=1)


class DriftConfig(_Section):
    """Drift monitoring: sample sizes for the Evidently checks and the thresholds of the retrain policy."""

    max_rows: int = Field(20_000, ge=100)
    embedding_sample: int = Field(100, ge=20)
    embedding_max_length: int = Field(32, ge=8, le=512)
    embedding_kinds: list[Literal["items", "users", "comments"]] = Field(["comments"], min_length=1)
    champion_signals: bool = False
    eval_users: int = Field(150, ge=10)
    session_gap_minutes: float = Field(30.0, gt=0)
    pca_components: int = Field(0, ge=0)
    embedding_plots: bool = False
    seed: int = 0
    thresholds: DriftThresholds = DriftThresholds()


class EvaluateConfig(_Section):
    """Offline evaluation and `liveloop benchmark`: protocol, cut-offs, baselines (src/liveloop/evaluation)."""

    split_quantile: float = Field(0.9, gt=0, lt=1)
    benchmark_steps: int | None = Field(None, ge=0)
    ks: list[int] = Field([10, 50], min_length=1)
    max_users: int | None = Field(5000, ge=1)
    knn_neighbours: int = Field(100, ge=1)
    mf_factors: int = Field(64, ge=1)
    mf_iterations: int = Field(10, ge=1)
    mf_regularization: float = Field(1.0, gt=0)
    mf_alpha: float = Field(10.0, gt=0)
    auc_negatives: int = Field(20, ge=1)
    bootstrap_samples: int = Field(1000, ge=10)
    user_batch_size: int = Field(512, ge=1)

    @property
    def ndcg_k(self) -> int:
        """The headline cut-off: the smallest of `ks`."""
        return min(self.ks)

    @property
    def ndcg_metric(self) -> str:
        """The one headline metric, NDCG at `ndcg_k`: evaluation reports it per user, the promotion gate bootstraps it
        and performance drift tracks the champion's; every reader takes it from here, so they cannot diverge."""
        return f"ndcg@{self.ndcg_k}"

    def report_metrics(self) -> list[str]:
        """The columns of the loop's reports (batch table, markdown, metrics/loop.csv, dashboard): the headline, its HR,
        the recall at the largest cut-off, CTR AUC."""
        return [self.ndcg_metric, f"hr@{self.ndcg_k}", f"recall@{max(self.ks)}", "auc"]

    def metric_names(self) -> list[str]:
        """The metrics every evaluated model reports (liveloop.evaluation.evaluate), for checking names in params."""
        at_k = [f"{name}@{k}" for k in self.ks for name in ("hr", "recall", "ndcg")]
        return at_k + ["mrr", f"coverage@{self.ndcg_k}", "auc"]


class PromotionConfig(_Section):
    """When a fine-tuned candidate replaces the champion (liveloop.evaluation.promotion_decision)."""

    metrics: list[str] = Field(["ndcg@10"], min_length=1)
    sets: list[str] = Field(["new", "replay"], min_length=1)
    max_relative_drop: float = Field(0.05, ge=0, lt=1)
    max_absolute_drop: float = Field(0.01, ge=0)
    confidence: float = Field(0.8, gt=0.5, lt=1)
    bootstrap_samples: int = Field(2000, ge=100)


class Config(_Section):
    seed: int = 7
    paths: PathsConfig = PathsConfig()
    simulate: SimulateConfig = SimulateConfig()
    validation: ValidateConfig = ValidateConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    loop: LoopConfig = LoopConfig()
    serve: ServeConfig = ServeConfig()
    drift: DriftConfig = DriftConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    promotion: PromotionConfig = PromotionConfig()

    @model_validator(mode="after")
    def _stages_agree(self) -> "Config":
        """Settings one stage writes and another reads must fit together; a mismatch fails here, not mid-loop."""
        known = self.evaluate.metric_names()
        unknown = [m for m in self.promotion.metrics if m not in known]
        if unknown:
            raise ValueError(f"promotion.metrics {unknown} are not reported by the evaluation with evaluate.ks "
                             f"{self.evaluate.ks}; choose from {known}")
        return self


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or holds a bad value."""


# settings merged into one: a params.yaml that still holds an old key is told where its value lives now
MOVED = {
    "evaluate.popularity_days": "model.popularity_days (one window for the ranker feature and the baselines)",
    "drift.ndcg_k": "evaluate.ks (performance drift tracks ndcg@<smallest of evaluate.ks>, the gate's metric)",
    "drift.performance_metric": "evaluate.ks (the headline metric is ndcg@<smallest of evaluate.ks>)",
}


def _problem(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if not where:  # a check across sections (Config._stages_agree) names its fields itself
        return err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and where in MOVED:
        return f"{where} is no longer a setting: use {MOVED[where]}"
    return f"{where}: {err['msg']} (got {err.get('input')!r})"


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
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"bad value in {path}: {problems}") from None
    cfg.paths = cfg.paths.resolve(path.resolve().parent)
    return cfg
