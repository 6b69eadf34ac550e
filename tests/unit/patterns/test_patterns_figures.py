"""Every patterns picture carries its colour bar; flat maps are marked; the job reports its progress."""

from __future__ import annotations

import numpy as np
import pytest
from factories import CLASSES, write_image_folder, write_manifest
from PIL import Image

from mushcam.cache import CamCache
from mushcam.manifest import load_manifest
from mushcam.map_scale import MIN_BAR_HEIGHT
from mushcam.patterns.concepts import Concept
from mushcam.patterns.figures import concept_pictures, flat_note, map_picture, mean_map_picture
from mushcam.patterns.run import PatternsSettings, run_patterns
from mushcam.patterns.store import load_clusters
from mushcam.patterns.strategies import StrategyCluster
from mushcam.render import colormap_lut


def _cluster(mean_map: np.ndarray) -> StrategyCluster:
    return StrategyCluster(0, ("A/1.png",), 1.0, 0.9, mean_map, (), (), ("A",))


def _bar_colours(picture: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in px) for px in picture[:, -90:].reshape(-1, 3)}


def test_a_mean_map_is_drawn_with_its_colour_bar_and_a_uniform_one_is_called_flat():
    peaked = np.zeros((16, 16), np.float32)
    peaked[12:, 12:] = 1 / 16
    picture, scale = mean_map_picture(_cluster(peaked), side=160)
    assert picture.shape[0] == 2 * 160 >= MIN_BAR_HEIGHT  # enlarged to a readable height, the bar beside it
    assert picture.shape[1] > picture.shape[0]  # map + bar
    jet = {tuple(int(v) for v in c) for c in colormap_lut("jet")}
    assert len(_bar_colours(picture) & jet) > 100  # the bar's strip runs through the colormap
    assert scale.high == pytest.approx(1 / 16) and not scale.flat and flat_note(scale) == ""
    uniform = np.full((16, 16), 1 / 256, np.float32)
    _, flat = mean_map_picture(_cluster(uniform))
    assert flat.flat and flat_note(flat) == " · flat map"
    assert flat_note(mean_map_picture(_cluster(np.zeros((16, 16), np.float32)))[1]) == " · empty map"


def test_a_photo_and_a_concept_are_drawn_over_the_photo_with_their_bar(tmp_path):
    Image.new("RGB", (300, 200), (0, 120, 0)).save(tmp_path / "p.png")
    spec = load_manifest(write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",),
                                        write_weights=False)).input
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0] = 2.0
    picture, scale = map_picture(tmp_path / "p.png", cam, spec, "Grad-CAM", side=160)
    assert picture.shape[0] == 3 * 107  # 300 x 200 -> 160 x 107, enlarged x3 to be readable (>= 240 px)
    assert picture.shape[1] > 2 * 160 and scale.high == 2.0 and not scale.flat
    concept = Concept(3, 0.5, 1.25, ("p.png", "p.png"), (cam, np.ones((4, 4), np.float32)))
    found = concept_pictures(tmp_path, concept, spec, side=160)
    assert [path for path, _, _ in found] == ["p.png", "p.png"]
    assert [s.flat for _, _, s in found] == [False, True]  # a concept spread evenly is marked flat


def test_the_job_reports_maps_clusters_and_concepts_and_a_raise_from_progress_stops_it(tmp_path):
    manifest = load_manifest(write_manifest(tmp_path / "ckpt", backbones=("mobilenet_v3_large",)))
    data = write_image_folder(tmp_path / "test", [n for n, _ in CLASSES], per_class=2, size=(48, 40))
    calls: list[tuple[str, int, int]] = []
    run_patterns(data, manifest, ["mobilenet_v3_large"], CamCache(tmp_path / "cams"), tmp_path / "r.sqlite",
                 PatternsSettings(concepts=1, propose_regions=True), log=lambda _line: None,
                 progress=lambda *a: calls.append(a))
    n, classes = 2 * len(CLASSES), len(CLASSES)
    labels = [c[0] for c in calls]
    assert [c[1:] for c in calls if c[0].endswith("maps")] == [(i, n) for i in range(1, n + 1)]
    assert [c[1:] for c in calls if c[0].endswith("clusters")] == [(i, classes) for i in range(1, classes + 1)]
    assert [c[1:] for c in calls if c[0].endswith("concepts")] == [(i, classes) for i in range(1, classes + 1)]
    assert [c[1:] for c in calls if c[0] == "regions"] == [(i, n) for i in range(1, n + 1)]  # each GrabCut box
    nmf = [c[1:] for c in calls if c[0].endswith("· factorising")]  # every 20 of the NMF's 200 iterations
    assert nmf and nmf[:10] == [(i, 200) for i in range(20, 201, 20)] and len(nmf) % 10 == 0
    batches = [c for c in calls if " · concepts of " in c[0] and not c[0].endswith("factorising")]
    assert batches and all(done == 0 and 0 < total <= n for _, done, total in batches)
    assert labels[0] == "mobilenet_v3_large · maps" and labels[-1] == "mobilenet_v3_large · concepts"

    class Stop(Exception):
        pass

    def stop_at_clusters(label: str, done: int, total: int) -> None:
        if label.endswith("clusters"):
            raise Stop

    with pytest.raises(Stop):
        run_patterns(data, manifest, ["mobilenet_v3_large"], CamCache(tmp_path / "cams"), tmp_path / "s.sqlite",
                     PatternsSettings(concepts=0), log=lambda _line: None, progress=stop_at_clusters)
    assert not (tmp_path / "s.sqlite").exists() or load_clusters(tmp_path / "s.sqlite") == []


def test_the_command_line_draws_bars_only_for_what_it_counts_in_photos():
    import io

    from mushcam.patterns.run import progress_bars

    stream = io.StringIO()
    report = progress_bars(stream)
    for label, done, total in [("m · maps", 4, 4), ("regions", 4, 4), ("m · clusters", 1, 2),
                               ("m · concepts of A", 0, 4), ("m · concepts of A · factorising", 20, 200)]:
        report(label, done, total)
    assert stream.getvalue() == "m · maps: 4/4 images\nregions: 4/4 images\n"
