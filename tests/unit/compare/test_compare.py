"""mushcam.compare: sampling, the grid's numbers, normalisation, export, and the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path

import pytest
import torch
from factories import make_image, write_image_folder, write_manifest
from PIL import Image

from mushcam import compare
from mushcam.cli import main
from mushcam.data import LabelledImage
from mushcam.explain import Explanation
from mushcam.manifest import load_manifest, manifest_from_dict
from mushcam.render import colormap_lut

CLASSES = [("Amanita", "poisonous"), ("Boletus", "edible"), ("Gyromitra", "poisonous"), ("Suillus", "edible")]
MANIFEST = manifest_from_dict({"classes": [{"name": n, "toxicity": t} for n, t in CLASSES], "input": {"size": 64}})


def fake_items(per_class: dict[str, int]) -> list[LabelledImage]:
    return [
        LabelledImage(Path(f"/nowhere/{label}/{k:02d}.png"), f"{label}/{k:02d}.png", label)
        for label, count in per_class.items()
        for k in range(count)
    ]


# --- sampling ---------------------------------------------------------------------------

def test_sample_is_balanced_spread_and_deterministic() -> None:
    items = fake_items({"Amanita": 10, "Boletus": 10, "Gyromitra": 10, "Suillus": 10})
    sample = compare.select_sample(items, MANIFEST, n=12, seed=0)
    labels = [i.label for i in sample]
    assert len(sample) == len({i.relpath for i in sample}) == 12
    assert {c: labels.count(c) for c in set(labels)} == {"Amanita": 3, "Boletus": 3, "Gyromitra": 3, "Suillus": 3}
    assert labels == sorted(labels, key=lambda c: (MANIFEST.toxicity(c) != "poisonous", c))  # poisonous first
    assert compare.select_sample(items, MANIFEST, n=12, seed=0) == sample
    assert compare.select_sample(items, MANIFEST, n=12, seed=1) != sample
    odd = [i.label for i in compare.select_sample(items, MANIFEST, n=7, seed=3)]
    assert sum(MANIFEST.toxicity(c) == "poisonous" for c in odd) == 4  # ceil(7 / 2)


def test_sample_fills_from_the_other_group_and_caps_at_the_folder() -> None:
    items = fake_items({"Amanita": 2, "Boletus": 10, "Suillus": 10, "Unlisted": 3})
    labels = [i.label for i in compare.select_sample(items, MANIFEST, n=12, seed=5)]
    assert labels.count("Amanita") == 2 and len(labels) == 12
    assert len(compare.select_sample(items, MANIFEST, n=100, seed=5)) == 25
    with pytest.raises(ValueError, match="at least 1"):
        compare.select_sample(items, MANIFEST, n=0)
    with pytest.raises(ValueError, match="no images"):
        compare.select_sample([], MANIFEST)


def test_sample_mixes_correct_and_wrong_within_a_budget() -> None:
    items = fake_items({"Amanita": 10, "Boletus": 10, "Gyromitra": 10, "Suillus": 10})
    wrong = {i.relpath for i in items if int(i.relpath[-6:-4]) % 5 == 0}  # 8 of 40 are errors
    calls: list[str] = []

    def outcome(item: LabelledImage) -> bool:
        calls.append(item.relpath)
        return item.relpath not in wrong

    sample = compare.select_sample(items, MANIFEST, n=12, seed=0, outcome=outcome)
    picked_wrong = sum(i.relpath in wrong for i in sample)
    assert picked_wrong == 6 and len(sample) == 12
    assert len(calls) == len(set(calls)) <= 36  # each candidate checked once, budget 3 n
    # With no error anywhere, the sample is still full (all correct), the budget still held.
    calls.clear()
    everything_right = compare.select_sample(items, MANIFEST, n=12, seed=0, outcome=lambda i: calls.append(1) or True)
    assert len(everything_right) == 12 and len(calls) <= 36


def test_real_test_folder_sample_is_balanced(real_data: Path) -> None:
    toxicity = {"Amanita": "poisonous", "Boletus": "edible", "Coprinellus": "edible", "Coprinopsis": "mixed",
                "Ganoderma": "inedible", "Gyromitra": "poisonous", "Omphalotus": "poisonous", "Volvopluteus": "edible"}
    manifest = manifest_from_dict({"classes": [{"name": n, "toxicity": t} for n, t in toxicity.items()]})
    from mushcam.data import scan_image_folder

    sample = compare.select_sample(scan_image_folder(real_data / "test"), manifest, n=12, seed=0)
    labels = [i.label for i in sample]
    assert sum(toxicity[c] == "poisonous" for c in labels) == 6
    assert {labels.count(c) for c in ("Amanita", "Gyromitra", "Omphalotus")} == {2}
    assert len(set(labels)) == 8  # the 6 other picks spread over the 5 other genera


# --- the grid, on maps whose answers are known --------------------------------------------

def hot(row: int, col: int, value: float = 1.0, size: int = 4) -> torch.Tensor:
    cam = torch.zeros(size, size)
    cam[row, col] = value
    return cam


def explanation(cam: torch.Tensor, predicted: int, confidence: float = 0.7) -> Explanation:
    probabilities = torch.full((4,), (1 - confidence) / 3)
    probabilities[predicted] = confidence
    return Explanation(cam=cam, probabilities=probabilities, class_idx=predicted, layer="x")


def known_comparison() -> compare.Comparison:
    """Two Amanita images; 'a' right, 'b' says Boletus (poisonous called edible), 'c' says Gyromitra."""
    maps = {
        "resnet50": (hot(0, 0), 0),
        "efficientnet_b0": (hot(0, 0, 1e-6), 1),
        "mobilenet_v3_large": (hot(3, 3), 2),
    }
    images = [compare.CompareImage("one.png", make_image(64, 64, seed=1), "sha-1", "amanita"),
              compare.CompareImage("two.png", make_image(64, 64, seed=2), "sha-2", None)]

    def explain(backbone: str, image: compare.CompareImage) -> Explanation:
        cam, predicted = maps[backbone]
        return explanation(cam, predicted)

    return compare.compute_comparison(images, list(maps), MANIFEST, explain)


def test_cells_judge_predictions_and_flag_poisonous_called_edible() -> None:
    comparison = known_comparison()
    first, second = comparison.rows
    assert first.true_class == "Amanita" and first.true_toxicity == "poisonous"  # label matched case-insensitively
    r50, eff, mob = (first.cells[b] for b in comparison.backbones)
    assert (r50.correct, r50.dangerous) == (True, False)
    assert (eff.predicted, eff.correct, eff.dangerous) == ("Boletus", False, True)
    assert (mob.predicted, mob.correct, mob.dangerous) == ("Gyromitra", False, False)  # poisonous for poisonous
    assert compare.verdict(eff)[0] == "WRONG: poisonous called edible"
    assert all(c.correct is None and not c.dangerous for c in second.cells.values())
    assert r50.confidence == pytest.approx(0.7)


def test_agreement_and_focus_of_known_maps() -> None:
    row = known_comparison().rows[0]
    iou = {(p.first, p.second): p.iou for p in row.agreement}
    # The same corner pixel (at any magnitude) agrees fully; opposite corners do not overlap.
    assert iou[("resnet50", "efficientnet_b0")] == 1.0
    assert iou[("resnet50", "mobilenet_v3_large")] == 0.0
    # Measured on the 64 x 64 grid: a corner pixel of a 4 x 4 map spreads bilinearly over a
    # 24 x 24 block, so the same focus for both corners and for any magnitude.
    r50, eff, mob = (row.cells[b].focus for b in ("resnet50", "efficientnet_b0", "mobilenet_v3_large"))
    assert r50.half_mass_area == eff.half_mass_area == mob.half_mass_area
    assert r50.entropy == pytest.approx(eff.entropy, abs=1e-8) and r50.entropy == pytest.approx(mob.entropy, abs=1e-8)
    assert 0.0 < r50.half_mass_area < 24 * 24 / 64**2
    assert r50.entropy < 0.8


def test_a_memo_measures_each_cell_once_and_changes_no_number() -> None:
    """With a memo and a cell key, a second call asks for no map, and an added method only for its own."""
    torch.manual_seed(0)
    cams = {(b, m, i): torch.rand(4, 4) for b in ("resnet50", "mobilenet_v3_large") for m in ("gradcam", "hirescam")
            for i in ("sha-1", "sha-2")}
    images = [compare.CompareImage("one.png", make_image(64, 48, seed=1), "sha-1", "amanita"),
              compare.CompareImage("two.png", make_image(64, 48, seed=2), "sha-2", "boletus")]
    asked: list[tuple[str, str, str]] = []

    def explain(backbone: str, image: compare.CompareImage, method: str = "gradcam") -> Explanation:
        asked.append((backbone, method, image.sha256))
        return explanation(cams[(backbone, method, image.sha256)], 0)

    def key(column: object, image: compare.CompareImage) -> tuple[str, str, str]:
        return (column.model, column.method, image.sha256)

    backbones, memo = ["resnet50", "mobilenet_v3_large"], {}
    plain = compare.compute_comparison(images, backbones, MANIFEST, explain, methods=["gradcam", "hirescam"])
    assert len(asked) == 8
    asked.clear()
    first = compare.compute_comparison(images, backbones, MANIFEST, explain, methods=["gradcam"], memo=memo,
                                       cell_key=key)
    assert len(asked) == 4 and len(memo) == 4
    asked.clear()
    again = compare.compute_comparison(images, backbones, MANIFEST, explain, methods=["gradcam"], memo=memo,
                                       cell_key=key)
    assert asked == [] and again.rows[0].agreement == first.rows[0].agreement
    both = compare.compute_comparison(images, backbones, MANIFEST, explain, methods=["gradcam", "hirescam"],
                                      memo=memo, cell_key=key)
    assert sorted(asked) == sorted((b, "hirescam", i) for b in backbones for i in ("sha-1", "sha-2"))
    for got, want in zip(both.rows, plain.rows, strict=True):  # the same numbers as without a memo
        assert got.agreement == want.agreement
        assert {k: c.focus for k, c in got.cells.items()} == {k: c.focus for k, c in want.cells.items()}


def test_summaries_count_and_split_focus_by_outcome() -> None:
    comparison = known_comparison()
    by_backbone = {r["backbone"]: r for r in compare.backbone_summary(comparison)}
    assert by_backbone["resnet50"]["correct"] == 1 and by_backbone["resnet50"]["wrong"] == 0
    assert by_backbone["resnet50"]["accuracy"] == 1.0
    assert by_backbone["efficientnet_b0"]["poisonous_called_edible"] == 1
    assert math.isnan(by_backbone["resnet50"]["entropy_mean_wrong"])  # no wrong prediction: undefined
    pairs = {r["pair"]: r for r in compare.pair_summary(comparison)}
    assert pairs["resnet50 vs efficientnet_b0"]["iou_top20_mean"] == 1.0
    assert pairs["resnet50 vs mobilenet_v3_large"]["iou_top20_mean"] == 0.0
    assert pairs["resnet50 vs mobilenet_v3_large"]["images_defined"] == 2


def test_shared_normalisation_keeps_a_weak_map_faint() -> None:
    row = known_comparison().rows[0]
    assert row.scale("per_image") is None
    assert row.scale("shared") == pytest.approx(1.0)
    weak = row.cells["efficientnet_b0"].explanation  # peak 1e-6, next to peaks of 1
    image = make_image(64, 64)
    top_colour = colormap_lut("jet")[255]
    own = compare.cell_picture(image, weak, MANIFEST.input, row.scale("per_image"), "heatmap")
    shared = compare.cell_picture(image, weak, MANIFEST.input, row.scale("shared"), "heatmap")
    assert (own == top_colour).all(axis=-1).any()  # stretched to its own maximum: full range
    assert (shared == colormap_lut("jet")[0]).all()  # 1e-6 of the row's maximum: the lowest colour
    with pytest.raises(ValueError, match="normalisation"):
        row.scale("global")


def test_export_png_and_csv(tmp_path: Path) -> None:
    comparison = known_comparison()
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    paths = compare.write_export(comparison, MANIFEST, tmp_path / "out", when=when)
    assert paths.png.name == "gradcam_detailed_comparison_20260102_030405.png"
    assert paths.csv.name == "gradcam_detailed_comparison_20260102_030405.csv"
    picture = Image.open(paths.png)
    assert picture.width >= 4 * compare.PANEL_SIDE and picture.height > 2 * compare.PANEL_SIDE
    rows = list(csv.DictReader(io.StringIO(paths.csv.read_text())))
    assert [r["image"] for r in rows] == ["one.png", "two.png"]
    assert rows[0]["efficientnet_b0_poisonous_called_edible"] == "True"
    assert rows[0]["resnet50_correct"] == "True" and rows[1]["resnet50_correct"] == ""
    assert float(rows[0]["iou_top20_resnet50_vs_efficientnet_b0"]) == 1.0
    assert float(rows[0]["resnet50_half_mass_area"]) == pytest.approx(
        comparison.rows[0].cells["resnet50"].focus.half_mass_area, rel=1e-5
    )
    summary = list(csv.DictReader(io.StringIO(paths.summary_csv.read_text())))
    accuracy = [r for r in summary if r["name"] == "resnet50" and r["measure"] == "accuracy"]
    assert accuracy == [{"scope": "backbone", "name": "resnet50", "measure": "accuracy", "value": "1"}]
    # A bigger sample gives a taller picture: rows are drawn, not cropped.
    heatmaps = compare.render_comparison(comparison, MANIFEST, "shared", "heatmap")
    one_row = compare.Comparison(comparison.backbones, comparison.rows[:1])
    assert compare.render_comparison(one_row, MANIFEST).shape[0] < heatmaps.shape[0]


# --- real (random-weight) models ------------------------------------------------------

def test_real_models_each_map_computed_once(checkpoint_dir: Path) -> None:
    from mushcam.catalog import load_catalog_model

    manifest = load_manifest(checkpoint_dir)
    backbones = ["efficientnet_b0", "mobilenet_v3_large"]
    loads: list[str] = []
    memo = compare.Memo(manifest, lambda b: loads.append(b) or load_catalog_model(manifest, b))
    images = [compare.load_compare_image(_png(make_image(96, 64, seed=s)), f"{s}.png", "Boletus") for s in range(3)]
    seen: list[tuple[int, int]] = []
    first = compare.compute_comparison(images, backbones, manifest, memo, progress=lambda d, t, w: seen.append((d, t)))
    assert len(memo.store) == 6
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    again = compare.compute_comparison(images, backbones, manifest, memo)
    assert len(memo.store) == 6  # cached: nothing recomputed
    assert loads == backbones  # each model loaded once
    for row_a, row_b in zip(first.rows, again.rows, strict=True):
        assert row_a.agreement == row_b.agreement
        for cell in row_a.cells.values():
            assert float(cell.explanation.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
            assert 0.0 < cell.focus.half_mass_area <= 1.0 or math.isnan(cell.focus.half_mass_area)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- command line -----------------------------------------------------------------------

@pytest.fixture
def small_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two cheap backbones at 64 px, a 4-class test folder of 3 images each, a fresh map cache."""
    monkeypatch.setenv("MUSHCAM_CACHE", str(tmp_path / "cams"))
    ckpt = tmp_path / "ckpt"
    write_manifest(ckpt, backbones=("efficientnet_b0", "mobilenet_v3_large"))
    folder = write_image_folder(tmp_path / "test", [name for name, _ in CLASSES], per_class=3)
    return ckpt, folder


def test_cli_samples_a_folder_and_writes_the_export(small_setup: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, folder = small_setup
    out = tmp_path / "out"
    code = main(["compare", str(folder), "--manifest", str(ckpt), "--n", "4", "--seed", "2", "--out", str(out)])
    assert code == 0
    pngs = list(out.glob("gradcam_detailed_comparison_*.png"))
    assert len(pngs) == 1 and len(list(out.glob("*.csv"))) == 2
    rows = list(csv.DictReader(io.StringIO(next(out.glob("*[0-9].csv")).read_text())))
    assert len(rows) == 4
    assert sum(r["true_toxicity"] == "poisonous" for r in rows) == 2
    assert "mobilenet_v3_large_predicted" in rows[0] and "resnet50_predicted" not in rows[0]
    printed = capsys.readouterr()
    assert "EfficientNet-B0 vs MobileNetV3-Large: top-20% IoU" in printed.out
    assert "[8/8]" in printed.err


def test_cli_second_run_reads_the_shared_map_cache(small_setup: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import mushcam.catalog

    ckpt, folder = small_setup
    loads: list[str] = []
    real_load = mushcam.catalog.load_catalog_entry
    monkeypatch.setattr(mushcam.catalog, "load_catalog_entry",
                        lambda manifest, backbone, demo=False: loads.append(backbone) or real_load(manifest, backbone))
    tables = []
    for run, extra in enumerate(([], [], ["--no-cache"])):
        out = tmp_path / f"out{run}"
        assert main(["compare", str(folder), "--manifest", str(ckpt), "--n", "3", "--out", str(out), *extra]) == 0
        tables.append(list(csv.DictReader(io.StringIO(next(out.glob("*[0-9].csv")).read_text()))))
        if run == 0:
            assert sorted(loads) == ["efficientnet_b0", "mobilenet_v3_large"]
            assert any((tmp_path / "cams").rglob("*.npz"))
        if run == 1:
            assert len(loads) == 2  # every map (and prediction) came from the disk cache: no model loaded
    assert tables[1] == tables[0]
    # In memory only, the maps are not rounded to the cache's float16 form: same sample and
    # predictions, measures equal to within that rounding.
    assert [r["image"] for r in tables[2]] == [r["image"] for r in tables[0]]
    for fresh, cached in zip(tables[2], tables[0], strict=True):
        assert fresh["mobilenet_v3_large_predicted"] == cached["mobilenet_v3_large_predicted"]
        assert float(fresh["mobilenet_v3_large_entropy"]) == pytest.approx(
            float(cached["mobilenet_v3_large_entropy"]), abs=1e-3
        )


def test_cli_explicit_files_take_their_folder_as_true_class(small_setup: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, folder = small_setup
    out = tmp_path / "out"
    files = [str(folder / "Gyromitra" / "img_0.png"), str(folder / "Suillus" / "img_1.png")]
    code = main(["compare", *files, "--manifest", str(ckpt), "--backbones", "mobilenet_v3_large",
                 "--normalise", "shared", "--view", "heatmap", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(next(out.glob("*[0-9].csv")).read_text())))
    assert [(r["image"], r["true_class"]) for r in rows] == [("img_0.png", "Gyromitra"), ("img_1.png", "Suillus")]
    assert not any(k.startswith("iou") for k in rows[0])  # one backbone: no pairs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{folder}/nope.jpg"], "no such file"),
        (["{folder}/../notes.txt"], "not an image"),
        (["{folder}", "--backbones", "vgg16"], "no model named 'vgg16' in the manifest"),
        (["{folder}", "--model", "resnet50"], "no model named 'resnet50' in the manifest; choose from efficientnet_b0"),
        (["{empty}"], "no images in"),
        (["{folder}", "{empty}"], "either one folder"),
        (["{folder}", "--n", "0"], "--n must be between 1 and 100"),
    ],
)
def test_cli_bad_input_is_one_clear_line(small_setup: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    ckpt, folder = small_setup
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty").mkdir()
    argv = [a.format(folder=folder, empty=tmp_path / "empty") for a in args]
    code = main(["compare", *argv, "--manifest", str(ckpt), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
