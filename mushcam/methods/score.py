"""Moved to :mod:`mushcam.cam.score` (Score-CAM); the old names are re-exported here."""

from mushcam.cam.score import DEFAULT_BATCH_SIZE, channel_masks, masked_scores, score_cam

__all__ = ["DEFAULT_BATCH_SIZE", "channel_masks", "masked_scores", "score_cam"]
