"""Moved to :mod:`mushcam.cam.activation` (Eigen-CAM); the old names are re-exported here."""

from mushcam.cam.activation import eigen_cam, eigen_projection

__all__ = ["eigen_cam", "eigen_projection"]
