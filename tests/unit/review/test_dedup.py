"""check-data: near-duplicates across splits, on photos the test makes.

The photos: a photo, its crop, a watermarked copy, another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mushcam import cli, store
from mushcam.review import dedup
from mushcam.review import store as rs


def scene(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A photo-like picture: a shaded background, a dozen solid shapes with edges, fine noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    background = top + (bottom - top) * (yy / h)[..., None]
    picture = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 90), rng.uniform(15, 90)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
    noisy = np.asarray(picture, dtype=float) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def watermarked(image: Image.Image) -> Image.Image:
    marked = image.convert("RGBA")
    layer = Image.new("RGBA", marked.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for y in (60, 220):  # two lines of semi-transparent text, as stock sites stamp them
        draw.text((30, y), "© STOCK PHOTO  watermark  ©", fill=(255, 255, 255, 150), font_size=28)
    return Image.alpha_composite(marked, layer).convert("RGB")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "mushrooms"
    for folder in ("train/A", "val/A", "test/A", "test/B"):
        (root / folder).mkdir(parents=True)
    photo = scene(1)
    photo.save(root / "train/A/photo.jpg", quality=92)
    photo.crop((40, 30, 440, 330)).resize((400, 300)).save(root / "val/A/crop.jpg", quality=88)  # 83 % crop
    watermarked(photo).save(root / "test/A/watermarked.jpg", quality=85)
    scene(2).save(root / "test/B/unrelated.jpg", quality=92)
    scene(3).save(tmp_path / "elsewhere.jpg", quality=92)
    (root / "train/A/linked.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # a symlinked file: hashed
    (root / "test/Root").symlink_to("/")  # a class folder linking to /: never walked
    return root


def test_finds_the_crop_and_the_watermark_not_the_unrelated_photo(dataset: Path) -> None:
    check = dedup.check_data(dataset)
    assert check.counts == {"train": 2, "val": 1, "test": 2}
    found = {(p.image_path, p.other_path) for p in check.pairs}
    assert found == {
        ("train/A/photo.jpg", "val/A/crop.jpg"),
        ("train/A/photo.jpg", "test/A/watermarked.jpg"),
        ("val/A/crop.jpg", "test/A/watermarked.jpg"),
    }
    assert check.with_twin_in("test", "train") == {"test/A/watermarked.jpg"}
    assert check.with_twin_in("val", "train") == {"val/A/crop.jpg"}
    assert [s for s, _ in check.skipped] == ["test/Root"]
    text = dedup.format_check(check)
    assert "test images with a near-duplicate in train: 1 of 2 (50.0%)" in text


def test_hash_distances_separate_related_from_unrelated(dataset: Path) -> None:
    def fp(name: str) -> tuple[np.ndarray, np.ndarray]:
        return dedup.fingerprint(dedup.thumbnail(dataset / name))

    photo, crop, mark, other = (fp(n) for n in ("train/A/photo.jpg", "val/A/crop.jpg", "test/A/watermarked.jpg",
                                               "test/B/unrelated.jpg"))
    matrix = dedup.distances(np.stack([photo[0], crop[0], mark[0], other[0]]))
    assert matrix[0, 1] <= dedup.DEFAULT_THRESHOLD and matrix[0, 2] <= dedup.DEFAULT_THRESHOLD
    assert matrix[0, 3] > 20 and matrix[1, 3] > 20  # unrelated: far
    assert dedup.colour_diff(photo[1], mark[1]) < dedup.DEFAULT_COLOUR_DIFF


def test_cli_marks_the_store(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.sqlite"
    store.save_run(results, store.RunRecord("resnet50", "x.pt", "0" * 64, "layer4", str(dataset / "test"),
                                            {"classes": [{"name": "A"}, {"name": "B"}]}, "t", "t", {}, 1, 1.0, 0),
                   store.Predictions((), (), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 2), np.float32)))
    code = cli.main(["check-data", str(dataset), "--store", str(results), "--csv", str(tmp_path / "pairs.csv")])
    out = capsys.readouterr().out
    assert code == 0 and "near-duplicate pairs: 3 (3 across splits" in out
    assert len((tmp_path / "pairs.csv").read_text().splitlines()) == 4
    marks = rs.load_duplicates(results)
    watermark_sha = next(
        p.other_sha256 for p in dedup.check_data(dataset).pairs if p.other_path.endswith("watermarked.jpg")
    )
    assert {m.other_split for m in marks[watermark_sha]} == {"train", "val"}
    assert cli.main(["check-data", str(tmp_path / "absent")]) == 2
    assert "data folder not found" in capsys.readouterr().err
