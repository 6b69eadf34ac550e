"""Moved to :mod:`mushcam.cam.core` (the capture path); the old names are re-exported here."""

from mushcam.cam.core import Capture, capture, weighted_sum

__all__ = ["Capture", "capture", "weighted_sum"]
