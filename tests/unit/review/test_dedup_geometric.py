"""check-data's second stage: the same find in another frame is reported at the default threshold."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.bench_matching import crop_stretch, make_scene, rotate, stamp_text
from mushcam.review.dedup import check_data, format_check


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    """train/ holds three finds; test/ a crop-stretched, stamped copy of one, a rotated copy of another, a new one."""
    root = tmp_path / "data"
    scenes = {seed: make_scene(seed) for seed in (1, 2, 3, 4)}
    for seed in (1, 2, 3):
        _save(root / "train" / "Amanita" / f"find_{seed}.jpg", scenes[seed])
    _save(root / "test" / "Amanita" / "crop_of_1.jpg", stamp_text(crop_stretch(scenes[1])))
    _save(root / "test" / "Amanita" / "rotated_2.jpg", rotate(scenes[2], 90.0))
    _save(root / "test" / "Amanita" / "find_4.jpg", scenes[4])
    return root


def test_the_default_check_reports_the_copies_the_hashes_miss_and_not_the_new_find(leaky: Path) -> None:
    hashes_only = check_data(leaky, geometric=False)
    found = check_data(leaky)
    pairs = {(p.image_path, p.other_path) for p in found.cross_split()}
    assert ("train/Amanita/find_1.jpg", "test/Amanita/crop_of_1.jpg") in pairs
    assert ("train/Amanita/find_2.jpg", "test/Amanita/rotated_2.jpg") in pairs
    assert not any("find_4" in a or "find_4" in b for a, b in pairs)
    assert ("train/Amanita/find_1.jpg", "test/Amanita/crop_of_1.jpg") not in {
        (p.image_path, p.other_path) for p in hashes_only.pairs}  # what the second stage adds
    assert found.with_twin_in("test", "train") == {"test/Amanita/crop_of_1.jpg", "test/Amanita/rotated_2.jpg"}
    text = format_check(found)
    assert "found only by matching local features" in text and "RANSAC" in text
