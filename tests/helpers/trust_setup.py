"""A results store with faithfulness and sanity results of two random-weight models (Trust page and browser tests).

Moved here from test_trust_page.py so that no test module imports another.
"""

from __future__ import annotations

from pathlib import Path

from factories import CLASSES, write_image_folder, write_manifest

from mushcam.cli import main


def write_trust_setup(tmp_path: Path, size: tuple[int, int] = (72, 56),
                      backbones: tuple[str, ...] = ("efficientnet_b0", "mobilenet_v3_large")) -> dict[str, Path]:
    """Checkpoints for two models (or ``backbones``), 8 generated photos, a store with faithfulness + sanity results."""
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=backbones)
    data = write_image_folder(tmp_path / "test", [n for n, _ in CLASSES], per_class=2, size=size)
    store = tmp_path / "results.sqlite"
    assert main(["faithfulness", "--data", str(data), "--manifest", str(ckpt), "--steps", "4",
                 "--road-percentages", "50", "--out", str(store)]) == 0
    assert main(["sanity", "--data", str(data), "--images", "2", "--manifest", str(ckpt),
                 "--model", "mobilenet_v3_large", "--out", str(store)]) == 0
    return {"ckpt": ckpt, "data": data, "store": store}
