"""The agreement matrix picture: every cell filled with its value's colour, n/a grey, clear refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mushcam.compare.matrix import BLUES, CELL, SCALE, UNDEFINED, blues, cell_colour, render_agreement_matrix
from mushcam.exceptions import MushcamError

CELL_AREA = (CELL * SCALE - 1) ** 2  # a cell's fill, less its white outline


def pixels_of(picture: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((picture == np.array(colour, dtype=np.uint8)).all(axis=-1).sum())


def test_the_colour_scale_runs_from_light_to_dark_through_its_stops() -> None:
    assert blues(0.0) == BLUES[0] and blues(1.0) == BLUES[-1]
    assert blues(0.5) == BLUES[4]  # the middle stop of nine
    assert blues(-3.0) == BLUES[0] and blues(7.0) == BLUES[-1]  # clipped
    assert cell_colour(0.0, "spearman") == BLUES[4]  # Spearman runs from -1 to 1
    assert cell_colour(-1.0, "spearman") == BLUES[0] and cell_colour(math.nan, "iou") == UNDEFINED


def test_each_cell_is_filled_with_its_values_colour() -> None:
    matrix = [[1.0, 0.25, math.nan], [0.25, 1.0, 0.5], [math.nan, 0.5, 1.0]]
    picture = render_agreement_matrix(["R50", "EffB0", "MNv3"], matrix, "iou")
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    # most of each cell keeps its fill (the value written in it covers the rest)
    for value, cells in ((1.0, 3), (0.25, 2), (0.5, 2)):
        share = pixels_of(picture, cell_colour(value, "iou")) / (cells * CELL_AREA)
        assert 0.6 < share <= 1.05, (value, share)  # 1.0's colour also ends the colour bar: a little more
    assert 0.6 < pixels_of(picture, UNDEFINED) / (2 * CELL_AREA) <= 1.0
    assert pixels_of(picture, cell_colour(0.75, "iou")) < 0.05 * CELL_AREA  # in the colour bar only: no cell


def test_the_picture_grows_with_the_columns_and_takes_any_label() -> None:
    small = render_agreement_matrix(["a", "b"], [[1.0, 0.1], [0.1, 1.0]], "spearman")
    labels = ["R50", "EffB0/Grad-CAM++", "Rüde ×4", "MNv3"]
    large = render_agreement_matrix(labels, np.eye(4).tolist(), "spearman")
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]
    assert pixels_of(large, cell_colour(0.0, "spearman")) > 0.6 * 12 * CELL_AREA  # the 12 off-diagonal zeros


def test_bad_input_is_refused_with_a_message() -> None:
    with pytest.raises(MushcamError, match="unknown agreement measure"):
        render_agreement_matrix(["a"], [[1.0]], "pearson")
    with pytest.raises(MushcamError, match="2 x 2"):
        render_agreement_matrix(["a", "b"], [[1.0, 0.0]], "iou")
    with pytest.raises(MushcamError, match="0 x 0"):
        render_agreement_matrix([], [], "iou")
