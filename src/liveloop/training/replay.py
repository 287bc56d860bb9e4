"""Reservoir sample of past training examples (Algorithm R), stored rendered so replay needs no full history.

`data/replay/examples.parquet` holds the examples (texts + a JSON snapshot of the user's repeat features);
`data/replay/state.json` holds how many examples the reservoir has seen, so every later example keeps an equal chance.
Both are replaced atomically (temp file + os.replace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.training.examples import EXAMPLE_COLUMNS, HistoryIndex

EXAMPLES_FILE = "examples.parquet"
STATE_FILE = "state.json"


def load_replay(replay_dir: Path) -> pd.DataFrame:
    """The stored reservoir (empty frame before the first run)."""
    path = Path(replay_dir) / EXAMPLES_FILE
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EXAMPLE_COLUMNS})
    return pd.read_parquet(path)


def reservoir_slots(size: int, seen: int, n_new: int, capacity: int, rng: np.random.Generator) -> dict[int, int]:
    """Algorithm R for a whole batch at once: reservoir slot -> row of the new examples that ends up there.

    Rows first fill the free slots; row r after that (the reservoir has seen `seen + r + 1` examples) replaces slot
    j ~ U[0, seen + r + 1) when j < capacity, a later row winning a slot over an earlier one, exactly as one at a time.
    """
    fill = max(0, min(capacity - size, n_new))
    slots = dict(zip(range(size, size + fill), range(fill)))
    rest = np.arange(fill, n_new)
    if len(rest):
        draws = rng.integers(0, seen + rest + 1)
        hit = draws < capacity
        # reversed, so np.unique's first occurrence is the last row that drew each slot
        slot, first = np.unique(draws[hit][::-1], return_index=True)
        slots.update(zip(slot.tolist(), rest[hit][::-1][first].tolist()))
    return slots


def update_replay(replay_dir: Path, new: pd.DataFrame, index: HistoryIndex, capacity: int, max_items: int, seed: int) -> int:
    """Offer every new example to the reservoir; only the ones kept get a history snapshot. Returns the size after."""
    replay_dir = Path(replay_dir)
    reservoir = load_replay(replay_dir)
    state_path = replay_dir / STATE_FILE
    seen = json.loads(state_path.read_text())["seen"] if state_path.exists() else len(reservoir)
    rng = np.random.default_rng([seed, seen])
    slots = reservoir_slots(len(reservoir), seen, len(new), capacity, rng)
    seen += len(new)
    size = max(len(reservoir), max(slots, default=-1) + 1)
    if slots:
        kept = new.iloc[list(slots.values())].copy()
        kept["history"] = [
            h if isinstance(h, str) else index.snapshot(u, t, max_items)
            for u, t, h in zip(kept["user_id"], kept["ts"], kept["history"])
        ]
        grown = reservoir.reindex(range(size)).astype(object) if len(reservoir) else pd.DataFrame(index=range(size), columns=EXAMPLE_COLUMNS, dtype=object)
        grown.iloc[list(slots.keys())] = kept[EXAMPLE_COLUMNS].to_numpy()
        reservoir = grown.astype({"weight": "float32"})
        reservoir["ts"] = pd.to_datetime(reservoir["ts"])
    replay_dir.mkdir(parents=True, exist_ok=True)
    tmp = replay_dir / f".{EXAMPLES_FILE}.tmp"
    reservoir.to_parquet(tmp, index=False)
    os.replace(tmp, replay_dir / EXAMPLES_FILE)
    tmp_state = replay_dir / f".{STATE_FILE}.tmp"
    tmp_state.write_text(json.dumps({"seen": seen, "size": len(reservoir), "capacity": capacity}))
    os.replace(tmp_state, state_path)
    return len(reservoir)
