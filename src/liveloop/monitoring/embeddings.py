"""Text embeddings for the embedding-drift checks: a sample of each batch's item, user-behaviour and comment texts,
encoded once with the pretrained (frozen) text encoder and cached per batch.

Why the frozen encoder and not the champion's towers: its space does not move when the champion is retrained, so a
batch embedded today is still valid as reference tomorrow (each batch is encoded once in the loop: as the current batch,
then read back from the cache while it sits in the reference window), and the AUC thresholds of the policy mean the
same thing on day 1 and day 100. The cache is safetensors, keyed by the batch's table contents and the sampling and
encoder settings, so an edited batch or a changed setting is re-encoded, never served stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from liveloop.config import DriftConfig
from liveloop.data.batches import Tables
from liveloop.data.schema import TABLES
from liveloop.monitoring.frames import comment_texts, sample_list



def batch_texts(tables: Tables, kinds: list[str], sample: int, seed: int) -> dict[str, list[str]]:
    """Up to `sample` texts per kind from one batch: live item texts, user behaviour texts, comments."""
    from liveloop.model.text import item_texts, user_texts

    texts: dict[str, list[str]] = {}
    if "items" in kinds:
        texts["items"] = sample_list(list(item_texts(tables["items"], tables["streams"]).values()), sample, seed)
    if "users" in kinds:
        users = list(user_texts(tables["events"], tables["items"]).values())
        texts["users"] = sample_list(users, sample, seed + 1)
    if "comments" in kinds:
        texts["comments"] = sample_list(comment_texts(tables["events"]), sample, seed + 2)
    return texts


def cache_key(batch_dir: Path, encoder: "TextEncoder", cfg: DriftConfig) -> str:
    """Hash of the batch's table files and every setting that changes the vectors."""
    digest = hashlib.sha256()
    for name in TABLES:
        digest.update((Path(batch_dir) / f"{name}.parquet").read_bytes())
    settings = {"encoder": encoder.name, "max_length": encoder.max_length, "sample": cfg.embedding_sample,
                "seed": cfg.seed, "kinds": sorted(cfg.embedding_kinds)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


class TextEncoder:
    """The pretrained encoder (liveloop.model.vectors), loaded on first use: a check whose batches are all cached
    never loads it."""

    def __init__(self, encoder: str, max_length: int):
        self.name = encoder
        self.max_length = max_length
        self._encoder = None

    def encode(self, texts: list[str]) -> np.ndarray:
        """[n, hidden] unit vectors (float32)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self._encoder is None:
            from liveloop.model.vectors import TextEncoder as Frozen

            self._encoder = Frozen(self.name, max_tokens=self.max_length)
        return self._encoder.encode(list(texts))


def _read_cache(path: Path, kinds: list[str]) -> dict[str, np.ndarray] | None:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.exists():
        return None
    try:
        vectors = load_file(str(path))
    except (SafetensorError, OSError):  # a torn or foreign file: re-encode and overwrite it
        return None
    return vectors if set(vectors) == set(kinds) else None


def _write_cache(path: Path, vectors: dict[str, np.ndarray]) -> None:
    """Write to a temp file and rename, so a concurrent reader never sees half a file."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    save_file({k: np.ascontiguousarray(v) for k, v in vectors.items()}, tmp)
    os.replace(tmp, path)


def batch_embeddings(batch_dir: Path, tables: Tables, encoder: TextEncoder, cfg: DriftConfig,
                     cache_dir: Path | None) -> tuple[dict[str, np.ndarray], bool]:
    """(vectors per kind, read from cache?) for one batch; encodes and caches on a miss."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{Path(batch_dir).name}-{cache_key(batch_dir, encoder, cfg)}.safetensors"
        cached = _read_cache(path, cfg.embedding_kinds)
        if cached is not None:
            return cached, True
    texts = batch_texts(tables, cfg.embedding_kinds, cfg.embedding_sample, cfg.seed)
    vectors = {kind: encoder.encode(kind_texts) for kind, kind_texts in texts.items()}
    if path is not None:
        _write_cache(path, vectors)
    return vectors, False


def stack(parts: list[np.ndarray]) -> np.ndarray:
    """Vectors of several batches as one matrix (batches without texts of a kind contribute nothing)."""
    full = [p for p in parts if len(p)]
    return np.concatenate(full) if full else np.zeros((0, 0), dtype=np.float32)
