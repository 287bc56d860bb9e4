"""Serving: the BentoML service (service.py), its item index, user state, feedback log and packaging.

Light to import: the loop calls `export_feedback` and `package_champion` without loading BentoML or torch.
"""

from liveloop.serving.feedback import export_feedback
from liveloop.serving.package import package_champion

__all__ = ["export_feedback", "package_champion"]
