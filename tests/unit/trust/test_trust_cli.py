"""faithfulness / sanity / report on the command line, stored next to the predictions."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from factories import CLASSES, write_image_folder, write_manifest

from mushcam.cli import main
from mushcam.store import load_runs
from mushcam.trust.report import bootstrap_mean, faithfulness_rows, least_faithful
from mushcam.trust.store import load_trust, mean_curves


@pytest.fixture(scope="module")
def scored_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Evaluate + faithfulness of two random-weight models on 8 generated images, once per module."""
    tmp_path = tmp_path_factory.mktemp("scored")
    checkpoint_dir = tmp_path / "ckpt"
    write_manifest(checkpoint_dir, backbones=("efficientnet_b0", "mobilenet_v3_large"))
    data = write_image_folder(tmp_path / "test", [n for n, _ in CLASSES], per_class=2, size=(72, 56))
    store = tmp_path / "results.sqlite"
    assert main(["evaluate", "--data", str(data), "--manifest", str(checkpoint_dir), "--backbones",
                 "mobilenet_v3_large",
                 "--out", str(store)]) == 0
    assert main(["faithfulness", "--data", str(data), "--manifest", str(checkpoint_dir), "--models",
                 "mobilenet_v3_large",
                 "efficientnet_b0", "--methods", "gradcam", "--steps", "4", "--road-percentages", "20,80",
                 "--baseline", "mean", "--out", str(store)]) == 0
    return data, store, checkpoint_dir


@pytest.fixture
def scored(scored_once: tuple[Path, Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A private copy of the scored store, so that tests that write to it do not meet."""
    data, store, checkpoint_dir = scored_once
    copy = tmp_path / "results.sqlite"
    shutil.copyfile(store, copy)
    return data, copy, checkpoint_dir


def test_faithfulness_is_stored_with_the_predictions_run_identity(scored: tuple[Path, Path, Path], capsys) -> None:
    data, store, _ = scored
    trust = load_trust(store)
    assert [(r.key.model, r.key.method) for r in trust.faithfulness] == [
        ("efficientnet_b0", "gradcam"), ("mobilenet_v3_large", "gradcam")]
    predictions_run = load_runs(store)[0]
    run = next(r for r in trust.faithfulness if r.key.model == "mobilenet_v3_large")
    assert (run.key.checkpoint_sha256, run.key.data_root) == (
        predictions_run.checkpoint_sha256,
        predictions_run.data_root,
    )
    assert run.n_images == 8 and run.settings["baseline"] == "mean" and run.settings["steps"] == 4
    assert run.image_paths == tuple(sorted(run.image_paths))
    for column in ("deletion_auc", "insertion_auc", "deletion_auc_random", "road"):
        values = run.values[column]
        assert np.all(np.isfinite(values)) and np.all((values >= -1) & (values <= 1)), column
    curves = mean_curves(store, run.frun_id)
    assert curves.deletion.shape == (5,) and curves.fractions[-1] == 1.0
    # Both curves start (deletion) or end (insertion) at the unperturbed image's probability.
    assert curves.deletion[0] == pytest.approx(run.values["probability"].mean(), abs=1e-5)
    assert curves.insertion[-1] == pytest.approx(run.values["probability"].mean(), abs=1e-5)
    assert len(least_faithful(run, 3)) == 3
    (row,) = faithfulness_rows([run])
    assert row.deletion_gain.mean == pytest.approx(
        float(np.mean(run.values["deletion_auc_random"] - run.values["deletion_auc"]))
    )
    assert row.insertion_gain.mean == pytest.approx(
        float(np.mean(run.values["insertion_auc"] - run.values["insertion_auc_random"]))
    )
    assert row.deletion_gain.low <= row.deletion_gain.mean <= row.deletion_gain.high

    capsys.readouterr()
    assert main(["report", str(store), "--summary"]) == 0
    text = capsys.readouterr().out
    assert "Faithfulness (mean over images, bootstrap 95% interval)" in text
    assert "MobileNetV3-Large  gradcam" in text and "EfficientNet-B0" in text


def test_a_rerun_replaces_the_same_identity_and_another_baseline_sits_beside_it(
    scored: tuple[Path, Path, Path],
) -> None:
    data, store, checkpoints = scored
    args = ["faithfulness", "--data", str(data), "--manifest", str(checkpoints), "--models", "mobilenet_v3_large",
            "--steps", "4", "--road-percentages", "none", "--limit", "3", "--out", str(store)]
    assert main(args + ["--baseline", "mean"]) == 0
    assert main(args + ["--baseline", "blur"]) == 0
    runs = [r for r in load_trust(store).faithfulness if r.key.model == "mobilenet_v3_large"]
    assert sorted((r.settings["baseline"], r.settings["road_percentages"], r.n_images) for r in runs) == [
        ("blur", [], 3), ("mean", [], 3), ("mean", [20, 80], 8)]
    with sqlite3.connect(store) as connection:  # nothing orphaned: rows only for the runs that exist
        ids = {row[0] for row in connection.execute("SELECT frun_id FROM faithfulness_runs")}
        assert {row[0] for row in connection.execute("SELECT DISTINCT frun_id FROM faithfulness_images")} == ids


def test_an_interrupted_run_is_invisible(scored: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    data, store, checkpoints = scored
    import mushcam.trust.run as run_module

    def explode(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module.trust_store, "finish_faithfulness", explode)
    assert main(["faithfulness", "--data", str(data), "--manifest", str(checkpoints), "--models", "mobilenet_v3_large",
                 "--steps", "4", "--road-percentages", "20,80", "--baseline", "mean", "--out", str(store)]) == 130
    runs = [r for r in load_trust(store).faithfulness if r.key.model == "mobilenet_v3_large"]
    assert len(runs) == 1 and runs[0].n_images == 8  # the finished run is still the one shown


def test_sanity_on_a_folder_is_stored_and_reported(scored: tuple[Path, Path, Path], capsys) -> None:
    data, store, checkpoints = scored
    assert main(["sanity", "--data", str(data), "--images", "3", "--manifest", str(checkpoints),
                 "--model", "mobilenet_v3_large", "--out", str(store)]) == 0
    out = capsys.readouterr().out
    assert "+ classifier.3" in out and "Spearman" in out
    (run,) = load_trust(store).sanity
    assert len(run.image_paths) == 3 and run.spearman.shape == (3, len(run.blocks))
    assert run.blocks[:2] == ("classifier.3", "classifier.0") and run.blocks[-1] == "features.0"
    assert main(["report", str(store), "--summary"]) == 0
    assert "Sanity check (cascading randomisation" in capsys.readouterr().out


def test_bad_options_are_one_line_errors(tmp_path: Path, checkpoint_dir: Path, capsys) -> None:
    data = write_image_folder(tmp_path / "test", ["Amanita"], per_class=1)
    store = str(tmp_path / "r.sqlite")
    assert main(["faithfulness", "--data", str(data), "--manifest", str(checkpoint_dir), "--methods", "nosuchcam",
                 "--out", store]) == 2
    assert "unknown CAM method 'nosuchcam'" in capsys.readouterr().err
    assert main(["faithfulness", "--data", str(data), "--manifest", str(checkpoint_dir), "--models", "resnet999",
                 "--out", store]) == 2
    assert "no model named 'resnet999'" in capsys.readouterr().err
    assert main(["sanity", "--manifest", str(checkpoint_dir), "--model", "mobilenet_v3_large"]) == 2
    assert "image files or --data" in capsys.readouterr().err


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_images() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.normal(0.5, 0.1, 20))
    large = bootstrap_mean(rng.normal(0.5, 0.1, 2000))
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert bootstrap_mean([1.0, float("nan"), 3.0]).n == 2
    assert bootstrap_mean([]).format() == "n/a"
    # For a normal sample the 95% interval is about mean ± 1.96 sd / sqrt(n).
    values = rng.normal(0.0, 1.0, 400)
    estimate = bootstrap_mean(values)
    assert (estimate.high - estimate.low) / 2 == pytest.approx(1.96 * values.std() / 20, rel=0.15)


def test_curves_figure_is_a_png_with_one_line_pair_per_run(scored: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    from mushcam.trust.figure import save_curves_figure

    _, store, _ = scored
    out = tmp_path / "curves.png"
    assert save_curves_figure(store, out) == 2
    assert save_curves_figure(store, tmp_path / "one.png", models=["mobilenet_v3_large"]) == 1
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1000, 380)


def test_sanity_on_image_files_prints_each_step(scored: tuple[Path, Path, Path], capsys) -> None:
    data, _, checkpoints = scored
    files = [str(p) for p in sorted(data.rglob("*.png"))[:2]]
    assert main(["sanity", *files, "--manifest", str(checkpoints), "--model", "efficientnet_b0"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_b0 · gradcam · layer features.7: 2 image(s)" in out
    steps = [line for line in out.splitlines() if re.match(r"^\s*\d+\. \+ ", line)]
    assert len(steps) == 10 and "+ classifier" in steps[0] and "+ features.0" in steps[-1]
