"""Hostile sizes for mushcam.render: any caller's views are capped, and "not seen" survives the scaling.

Moved from the hostile-input catalogue (tests/unit/cli/test_hostile_inputs.py), which keeps the
63-megapixel photo that goes through the command line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from factories import make_image


def test_render_views_caps_any_caller(tmp_path: Path) -> None:
    from mushcam.render import render_views

    image = make_image(3000, 1000)
    heat = np.random.default_rng(0).random((1000, 3000), dtype=np.float32)
    heat[:, :100] = np.nan
    views = render_views(image, heat, max_side=600)
    assert views.original.shape == (200, 600, 3) and views.scaled_from == (3000, 1000)
    assert (views.heatmap[:, :10] == 128).all()  # "not seen" survives the scaling
