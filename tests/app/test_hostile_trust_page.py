"""Issue 18 §2 on the Trust page (AppTest): a damaged store, a hostile data folder or image path, a long sanity
check. Each is one box (never an exception), nothing read outside the folder the user gave."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from project_paths import PROJECT_ROOT
from streamlit.testing.v1 import AppTest
from trust_damage import DAMAGE, damaged_copy
from trust_setup import write_trust_setup

TRUST = str(PROJECT_ROOT / "pages" / "4_Trust.py")
MODEL = "mobilenet_v3_large"

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_trust_setup(tmp_path_factory.mktemp("hostile-trust-page"), backbones=(MODEL,))


def trust_page(monkeypatch: pytest.MonkeyPatch, setup: dict[str, Path], store: Path, data: str | None) -> AppTest:
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setenv("MUSHCAM_RESULTS", str(store))
    monkeypatch.setenv("MUSHCAM_DATA", data or "")
    return AppTest.from_file(TRUST, default_timeout=180).run()


def boxes(at: AppTest) -> list[str]:
    """Every error and warning box on the page."""
    return [b.value for b in (*at.error, *at.warning)]


def edited(store: Path, folder: Path, sql: str) -> Path:
    copy = folder / "edited.sqlite"
    copy.write_bytes(store.read_bytes())
    with sqlite3.connect(copy) as connection:
        assert connection.execute(sql).rowcount >= 1
    connection.close()
    return copy


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_trust_table_is_one_error_box(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    store = damaged_copy(setup["store"], tmp_path, damage)
    before = store.read_bytes()
    at = trust_page(monkeypatch, setup, store, str(setup["data"]))
    assert not at.exception
    assert len(boxes(at)) == 1 and re.search(DAMAGE[damage][1], at.error[0].value), boxes(at)
    assert store.read_bytes() == before


def test_a_store_that_records_the_file_system_root_is_refused(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = edited(setup["store"], tmp_path, "UPDATE faithfulness_runs SET data_root = '/'")
    at = trust_page(monkeypatch, setup, store, None)  # no folder chosen: the page must not take '/'
    assert not at.exception
    assert len(boxes(at)) == 1 and "the whole file system" in at.error[0].value
    assert not at.get("image") and not at.get("image")  # nothing read
    assert not [b for b in at.button if b.key == "err_use_recorded"]  # no offer to use '/'


def test_a_user_folder_that_is_the_file_system_root_is_refused(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = trust_page(monkeypatch, setup, setup["store"], "/")
    assert not at.exception
    assert len(boxes(at)) == 1 and "'/', the whole file system" in at.error[0].value
    assert not at.get("image") and not at.get("image")
    opens = [b for b in at.button if b.key and b.key.startswith("open_")]
    assert opens and all(b.disabled for b in opens)  # Open on Explain cannot hand '/' to the Explain page


def test_without_a_chosen_folder_the_recorded_one_is_only_offered(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = trust_page(monkeypatch, setup, setup["store"], None)
    assert not at.exception and not boxes(at)
    assert not at.get("image") and not at.get("image")  # the store's folder is not read on its own say
    at.button(key="err_use_recorded").click().run()  # the user's click makes it their folder
    assert not at.exception and not boxes(at)
    assert at.session_state["err_data"] == str(setup["data"].resolve())
    assert len(at.get("image")) == 6


def test_a_folder_never_evaluated_is_not_where_photos_come_from(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store says its photos lie in another folder (with other pictures under the same names): the page
    reads them from the folder the user gave, and never from the recorded one."""
    elsewhere = tmp_path / "elsewhere"
    store = edited(setup["store"], tmp_path, f"UPDATE faithfulness_runs SET data_root = '{elsewhere}'")
    at = trust_page(monkeypatch, setup, store, str(setup["data"]))
    assert not at.exception and not boxes(at)
    assert len(at.get("image")) == 6  # from the user's folder; the recorded one does not even exist
    at = trust_page(monkeypatch, setup, store, None)
    assert not at.exception and len(boxes(at)) == 1
    assert f"the folder this store records '{elsewhere}' is not an existing folder" in at.error[0].value


@pytest.mark.parametrize("hostile", ["../../../../etc/passwd", "/etc/passwd"])
def test_an_image_path_outside_the_folder_is_refused_in_one_box(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: str
) -> None:
    store = edited(setup["store"], tmp_path, f"UPDATE faithfulness_images SET image_path = '{hostile}', "
                   "deletion_auc = 1.0, insertion_auc = 0.0 WHERE image_path = (SELECT MIN(image_path) FROM "
                   "faithfulness_images)")  # the least faithful photo: always among the six shown
    at = trust_page(monkeypatch, setup, store, str(setup["data"]))
    assert not at.exception
    assert len(boxes(at)) == 1 and at.warning
    assert "1 of these photos cannot be shown" in at.warning[0].value
    assert f"refused path outside the data folder: '{hostile}'" in at.warning[0].value
    assert len(at.get("image")) == 5  # the other photos are shown
    first_open = next(b for b in at.button if b.key and b.key.startswith("open_"))
    assert first_open.disabled


def test_the_sanity_check_shows_its_cost_first_then_a_progress_bar(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = trust_page(monkeypatch, setup, setup["store"], str(setup["data"]))
    at.selectbox(key="sanity_model").select(MODEL).run()
    captions = "\n".join(c.value for c in at.caption)
    estimate = re.search(r"Before you start: (\d+) maps \((\d+) randomisation steps and the trained model's\), each "
                         r"about [\d.]+ (s|min) with Grad-CAM .*: about [\d.]+ (s|min) in all", captions)
    assert estimate and int(estimate.group(1)) == int(estimate.group(2)) + 1, captions
    assert not at.get("progress") and "sanity_one_chart" not in str(at.get("plotly_chart"))  # not started
    at.button(key="sanity_run").click().run()
    assert not at.exception and not at.error
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].proto.value == 100
    assert f"Done: {estimate.group(1)} maps in" in bars[0].proto.text
    assert at.success  # the verdict
