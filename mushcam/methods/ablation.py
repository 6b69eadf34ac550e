"""Moved to :mod:`mushcam.cam.ablation` (Ablation-CAM); the old names are re-exported here."""

from mushcam.cam.ablation import (
    DEFAULT_CHUNK_BYTES,
    ablation_cam,
    ablation_forward_passes,
    ablation_scores,
    default_batch_size,
)

__all__ = ["DEFAULT_CHUNK_BYTES", "ablation_cam", "ablation_forward_passes", "ablation_scores", "default_batch_size"]
