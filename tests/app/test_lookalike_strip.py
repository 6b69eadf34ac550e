"""The look-alike strip (ui/lookalike_support.py) drawn by a page script: two rows of training photos with maps."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import CLASSES, make_image, write_manifest
from streamlit.testing.v1 import AppTest


def _page(folder: str, data_root: str, photo: str, true: str, with_maps: bool) -> None:
    from mushcam.data import decode_image, image_sha256, read_bytes
    from ui import lookalike_support, state

    ctx = state.context(folder, False)
    data = read_bytes(photo)
    found = lookalike_support.lookalike_strip(ctx, "resnet50", decode_image(data), image_sha256(data), data_root,
                                              true=true, k=2, with_maps=with_maps)
    import streamlit as st

    st.session_state["found"] = found


@pytest.fixture
def app_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cache"))
    write_manifest(tmp_path / "ckpt", backbones=("resnet50",))
    for ci, (name, _) in enumerate(CLASSES):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
        for k in range(3):
            make_image(72, 56, seed=100 * ci + k).save(tmp_path / "data" / "train" / name / f"img_{k}.png")
    photo = tmp_path / "query.png"
    make_image(72, 56, seed=7).save(photo)
    return tmp_path / "ckpt", tmp_path / "data", photo


@pytest.mark.parametrize("with_maps", [True, False])
def test_the_strip_shows_k_photos_of_the_predicted_and_the_true_class(app_setup, with_maps: bool) -> None:
    import streamlit as st

    st.cache_resource.clear()
    folder, data_root, photo = app_setup
    at = AppTest.from_function(_page, args=(str(folder / "manifest.json"), str(data_root), str(photo), "Suillus",
                                            with_maps), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    found = at.session_state["found"]
    assert found is not None and len(found.of_predicted) == 2
    rows = 1 if found.predicted == "Suillus" else 2
    assert len(at.get("image")) == 2 * rows  # one st.image per photo, k = 2 per row
    paths = [c.value for c in at.caption[1:]]
    assert paths == [n.path for n in found.of_predicted + found.of_true]
    assert at.markdown[0].value == f"**It resembles these {found.predicted}**"
    assert all(n.label == found.predicted for n in found.of_predicted)


def test_no_training_photos_is_a_warning_not_an_error(app_setup, tmp_path: Path) -> None:
    folder, _, photo = app_setup
    (tmp_path / "empty" / "train").mkdir(parents=True)
    args = (str(folder / "manifest.json"), str(tmp_path / "empty"), str(photo), "Suillus", False)
    at = AppTest.from_function(_page, args=args, default_timeout=60)
    at.run()
    assert not at.exception
    assert "not available" in at.warning[0].value
