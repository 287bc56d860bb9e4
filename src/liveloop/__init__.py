"""liveloop: a continuously learning recommender for live-stream commerce."""

__version__ = "0.1.0"
