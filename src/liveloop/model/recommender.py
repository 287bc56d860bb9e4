"""The recommender: frozen text vectors as the vocabulary, a small sequence model as the user tower, and a LightGBM
ranking stage on top (liveloop.model.ranker).

    item vector  = normalize(A_item @ e(item text))                       A_item starts as the identity
    user vector  = normalize(A_user @ sum_t w_t e(event_t) + R(events))   w = softmax(type + age prior), R starts at 0
    retrieval    = cos(user, item) / temperature

e(.) is the pretrained encoder (mean-pooled MiniLM), computed once per text and cached (liveloop.model.vectors). At
step 0 the model is "recency- and type-weighted mean of what you engaged with, compared with each item's text": the
pretrained geometry, so a fresh model already ranks like the frozen encoder, and the residual transformer R (SASRec
sized: 2 layers, 2 heads) only adds what training shows helps. Training runs on cached vectors, so an update can
afford thousands of steps on a laptop CPU.

A model dir is self-contained and pickle-free: model.safetensors (tower weights), config.json (ModelConfig),
state.json (step, lineage, metrics), ranker.json (LightGBM models as text + feature names), stats.json (item
popularity and repeat shares as of training); the encoder is named in config.json with its fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from liveloop.config import ModelConfig
from liveloop.model.history import COMMENT_TOKEN, ITEM_TOKEN, N_AGE, N_TYPES, UserState, age_buckets
from liveloop.model.text import NO_HISTORY
from liveloop.model.vectors import TextEncoder

__all__ = ["ModelError", "Recommender", "SeqTwoTower", "pick_device"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
RANKER_FILE = "ranker.json"
STATS_FILE = "stats.json"
# Pooling prior (logits): purchases and carts count more than clicks, returns hardly at all; each older age bucket
# weighs exp(-AGE_DECAY) less. Chosen as a sensible start, then learned.
TYPE_PRIOR = (0.0, -0.3, 0.0, 0.3, 0.0, -3.0)  # pad, click, add_to_cart, purchase, comment, return
AGE_DECAY = 0.3


class ModelError(ValueError):
    """A model dir, encoder name or input the recommender cannot use."""


def pick_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda if present, else cpu; anything else must name a device torch has."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
    return dev


def _identity(linear: nn.Linear) -> nn.Linear:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.weight.shape[0]))
        linear.bias.zero_()
    return linear


class SeqTwoTower(nn.Module):
    """Item adapter + user sequence tower over cached text vectors; forward-free so training and serving share it."""

    def __init__(self, dim: int, cfg: ModelConfig):
        super().__init__()
        self.temperature = cfg.temperature
        self.item_adapter = _identity(nn.Linear(dim, dim))
        self.user_adapter = _identity(nn.Linear(dim, dim))
        self.type_logit = nn.Parameter(torch.tensor(TYPE_PRIOR, dtype=torch.float32))
        self.age_logit = nn.Parameter(-AGE_DECAY * torch.arange(N_AGE, dtype=torch.float32))
        d = cfg.seq_dim
        self.in_proj = nn.Linear(dim, d)
        self.type_emb = nn.Embedding(N_TYPES, d)
        self.age_emb = nn.Embedding(N_AGE, d)
        self.pos_emb = nn.Embedding(cfg.history_window, d)
        layer = nn.TransformerEncoderLayer(d, cfg.seq_heads, 2 * d, dropout=cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.seq = nn.TransformerEncoder(layer, cfg.seq_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def items(self, base: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.item_adapter(base), dim=-1)

    def users(self, vecs: torch.Tensor, types: torch.Tensor, ages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[n, L, dim] event vectors (newest first) -> [n, dim] unit user vectors; rows without events -> 0."""
        n = types.shape[0]
        out = torch.zeros((n, vecs.shape[-1]), dtype=vecs.dtype, device=vecs.device)
        rows = mask.any(1)
        if not rows.any():
            return out
        length = int(mask.sum(1).max())  # sequences are newest-first and left-aligned: trim the padding columns
        vecs, types, ages, mask = vecs[rows, :length], types[rows, :length], ages[rows, :length], mask[rows, :length]
        logits = (self.type_logit[types] + self.age_logit[ages]).masked_fill(~mask, float("-inf"))
        pooled = (torch.softmax(logits, dim=1).unsqueeze(-1) * vecs).sum(1)
        positions = torch.arange(length, device=vecs.device).unsqueeze(0)
        h = self.in_proj(vecs) + self.type_emb(types) + self.age_emb(ages) + self.pos_emb(positions)
        h = self.seq(h, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        residual = self.out((h * m).sum(1) / m.sum(1).clamp(min=1.0))
        out[rows] = nn.functional.normalize(self.user_adapter(pooled) + residual, dim=-1)
        return out


class Recommender:
    """Inference API: item/user vectors, retrieval scores, ranker scores and CTR; save/load a model dir."""

    def __init__(self, net: SeqTwoTower, encoder: TextEncoder, config: ModelConfig, device: torch.device,
                 state: dict | None = None, ranker=None, stats: dict | None = None):
        self.net = net.to(device).eval()
        self.encoder = encoder
        self.config = config
        self.device = device
        self.state = state or {}
        self.ranker = ranker  # liveloop.model.ranker.Ranker or None (retrieval order)
        self.stats = stats or {}  # item statistics as of training (liveloop.model.ranker.ItemStats.to_json)

    # construction -----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str = "auto", seed: int | None = None,
                    encoder: TextEncoder | None = None, cache_dir: Path | None = None) -> "Recommender":
        """The pretrained encoder + a fresh tower that starts at the pretrained geometry (seeded)."""
        encoder = encoder or TextEncoder(cfg.encoder, cache_dir)
        if seed is not None:
            torch.manual_seed(seed)
        return cls(SeqTwoTower(encoder.dim, cfg), encoder, cfg, pick_device(device))

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto", encoder: TextEncoder | None = None,
             cache_dir: Path | None = None) -> "Recommender":
        """Rebuild from a model dir (safetensors + JSON only; no pickle, no network)."""
        from safetensors.torch import load_file

        from liveloop.model.ranker import Ranker

        d = Path(model_dir)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (d / name).exists():
                raise ModelError(f"{d} is not a model dir: {name} is missing")
        try:
            cfg = ModelConfig.model_validate(json.loads((d / CONFIG_FILE).read_text()))
        except (ValueError, json.JSONDecodeError) as exc:
            raise ModelError(f"{d / CONFIG_FILE} is not a valid model config: {exc}") from None
        state = json.loads((d / STATE_FILE).read_text()) if (d / STATE_FILE).exists() else {}
        encoder = encoder or TextEncoder(cfg.encoder, cache_dir)
        expected = state.get("encoder_fingerprint")
        if expected and expected != encoder.fingerprint:
            raise ModelError(f"{d} was trained on encoder {cfg.encoder!r} with fingerprint {expected}, but the encoder "
                             f"loaded here has {encoder.fingerprint}: its vectors would not match")
        net = SeqTwoTower(encoder.dim, cfg)
        missing, unexpected = net.load_state_dict(load_file(str(d / WEIGHTS_FILE)), strict=False)
        if missing or unexpected:
            raise ModelError(f"{d / WEIGHTS_FILE} does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
        ranker = Ranker.from_json(json.loads((d / RANKER_FILE).read_text())) if (d / RANKER_FILE).exists() else None
        stats = json.loads((d / STATS_FILE).read_text()) if (d / STATS_FILE).exists() else {}
        return cls(net, encoder, cfg, pick_device(device), state, ranker, stats)

    def save(self, model_dir: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(d / WEIGHTS_FILE))
        (d / CONFIG_FILE).write_text(json.dumps(self.config.model_dump(mode="json"), indent=2))
        self.state["encoder_fingerprint"] = self.encoder.fingerprint
        (d / STATE_FILE).write_text(json.dumps(self.state, indent=2, default=str))
        (d / STATS_FILE).write_text(json.dumps(self.stats))
        if self.ranker is not None:
            (d / RANKER_FILE).write_text(json.dumps(self.ranker.to_json()))
        elif (d / RANKER_FILE).exists():
            (d / RANKER_FILE).unlink()

    # vectors ----------------------------------------------------------------------------------------------------
    def base_vectors(self, texts: list[str]) -> np.ndarray:
        """[n, dim] frozen encoder vectors (cached by text)."""
        return self.encoder.encode(list(texts))

    @torch.inference_mode()
    def item_vectors(self, base: np.ndarray) -> np.ndarray:
        """[n, dim] unit item-tower vectors from base vectors."""
        if len(base) == 0:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return self.net.items(torch.from_numpy(np.asarray(base, np.float32)).to(self.device)).float().cpu().numpy()

    def encode_items(self, texts: list[str]) -> np.ndarray:
        return self.item_vectors(self.base_vectors(texts))

    def sequence_batch(self, states: list[UserState], item_base: Callable[[list[str]], np.ndarray]) -> dict:
        """Collate user states into tower inputs: [n, L] token rows into a [T, dim] vector table, types, ages, mask.

        `item_base` maps item ids to base vectors (zeros for unknown ones); comments are embedded (cached)."""
        length = self.config.history_window
        n = len(states)
        tokens: dict[str, int] = {}
        rows = np.zeros((n, length), dtype=np.int64)
        types = np.zeros((n, length), dtype=np.int64)
        ages = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=bool)
        for i, s in enumerate(states):
            m = min(len(s.tokens), length)
            if m == 0:
                continue
            rows[i, :m] = [tokens.setdefault(t, len(tokens)) for t in s.tokens[:m]]
            types[i, :m] = s.types[:m]
            ages[i, :m] = age_buckets(np.asarray(s.ages[:m], dtype=np.float64))
            mask[i, :m] = True
        table = self.token_vectors(list(tokens), item_base)
        return {"table": table, "rows": rows, "types": types, "ages": ages, "mask": mask}

    def token_vectors(self, tokens: list[str], item_base: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        dim = self.encoder.dim
        out = np.zeros((len(tokens), dim), dtype=np.float32)
        items = [(j, t[len(ITEM_TOKEN):]) for j, t in enumerate(tokens) if t.startswith(ITEM_TOKEN)]
        comments = [(j, t[len(COMMENT_TOKEN):]) for j, t in enumerate(tokens) if t.startswith(COMMENT_TOKEN)]
        if items:
            out[[j for j, _ in items]] = item_base([i for _, i in items])
        if comments:
            out[[j for j, _ in comments]] = self.base_vectors([c or "(empty comment)" for _, c in comments])
        return out

    def prior_vector(self, state: UserState, item_base: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """The untrained tower's user vector: the prior-weighted mean of the event vectors (the pretrained geometry).

        The ranker reads its cosine next to the trained tower's, so what the encoder knew is never lost to training."""
        m = min(len(state.tokens), self.config.history_window)
        if m == 0:
            return self.cold_vector()
        vecs = self.token_vectors(list(state.tokens[:m]), item_base)
        logits = np.asarray(TYPE_PRIOR)[np.asarray(state.types[:m])] - AGE_DECAY * age_buckets(np.asarray(state.ages[:m], np.float64))
        w = np.exp(logits - logits.max())
        v = (w / w.sum()) @ vecs
        return (v / max(np.linalg.norm(v), 1e-12)).astype(np.float32)

    def cold_vector(self) -> np.ndarray:
        """A user without events: the encoder's vector of NO_HISTORY, as the frozen encoder reads them, so the first
        model of a new world ranks cold users where the pretrained model does instead of all ties."""
        v = self.base_vectors([NO_HISTORY])[0]
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    def user_vectors_from_batch(self, batch: dict) -> torch.Tensor:
        """Differentiable [n, dim] user vectors from a `sequence_batch` (used by training)."""
        table = torch.as_tensor(batch["table"], device=self.device)
        rows = torch.as_tensor(batch["rows"], device=self.device)
        vecs = table[rows] if len(table) else torch.zeros((*rows.shape, self.encoder.dim), device=self.device)
        return self.net.users(vecs, torch.as_tensor(batch["types"], device=self.device),
                              torch.as_tensor(batch["ages"], device=self.device),
                              torch.as_tensor(batch["mask"], device=self.device))

    @torch.inference_mode()
    def user_vectors(self, states: list[UserState], item_base: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """[n, dim] unit user vectors; users without history get `cold_vector`."""
        if not states:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        batch = self.sequence_batch(states, item_base)
        out = self.user_vectors_from_batch(batch).float().cpu().numpy()
        cold = ~batch["mask"].any(1)
        if cold.any():
            out[cold] = self.cold_vector()
        return out
