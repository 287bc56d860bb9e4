"""Text builders, user histories and the recommender (towers over cached text vectors + ranker).

Torch-free names import eagerly; the torch-backed ones load on first use so `import liveloop.model` stays light.
"""

from liveloop.model.text import item_texts, user_texts

_LAZY = {"Recommender", "SeqTwoTower", "ModelError", "pick_device"}

__all__ = ["item_texts", "user_texts", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        from liveloop.model import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module 'liveloop.model' has no attribute {name!r}")
