"""Training: the loop (towers on cached vectors, then the ranker), checkpoints and DDP. `train()` is the one entry point."""

from liveloop.training.loop import TrainError, TrainResult, train

__all__ = ["TrainError", "TrainResult", "train"]
