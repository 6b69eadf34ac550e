"""Moved to :mod:`mushcam.cam.gradient` (the gradient-weighted methods); names re-exported here."""

from mushcam.cam.gradient import (
    grad_cam_map,
    grad_cam_pp,
    grad_cam_pp_weights,
    hires_cam,
    layer_cam,
    xgrad_cam,
    xgrad_cam_weights,
)

__all__ = [
    "grad_cam_map",
    "grad_cam_pp",
    "grad_cam_pp_weights",
    "hires_cam",
    "layer_cam",
    "xgrad_cam",
    "xgrad_cam_weights",
]
