"""The training command: class weights, metrics, checkpoints the app loads, Ctrl-C, --pretrained."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from factories import CLASSES, make_image, write_checkpoint, write_image_folder, write_manifest
from PIL import Image
from project_paths import PROJECT_ROOT

from mushcam import cli, train
from mushcam.augment import AugmentConfig, augment_batch, crop_params, prepare_image
from mushcam.catalog import load_catalog_model
from mushcam.data import load_image, preprocess, scan_image_folder
from mushcam.explain import explain_image
from mushcam.manifest import InputSpec, load_manifest, manifest_from_dict
from mushcam.models import BACKBONES, DEFAULT_LAYERS, build_model, imagenet_weights_path
from mushcam.train import loop, output

NAMES = [name for name, _ in CLASSES]  # Amanita (poisonous), Boletus, Gyromitra (poisonous), Suillus
EXAMPLE_MANIFEST = PROJECT_ROOT / "examples" / "shared-mushrooms.manifest.json"
SIZE = 32  # network input for the tiny trainings: every backbone's stride-32 layer is then 1x1


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread in these tests: on the shared 2-core host, two threads contending with
    other processes made the same small job 4-17x slower. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_dataset(root: Path, per_class: int = 2) -> Path:
    """ROOT/{train,val,test}/<Class>/ of generated 40x30 images (different images per split)."""
    for offset, split in enumerate(("train", "val", "test")):
        folder = root / split
        for ci, name in enumerate(NAMES):
            (folder / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                make_image(40, 30, seed=1000 * offset + 10 * ci + k).save(folder / name / f"img_{k}.png")
    return root


def run_cli(argv: list[str]) -> int:
    """``python -m mushcam train ...`` in-process, with one thread (see ``one_thread``)."""
    return cli.main(["train", *argv, "--threads", "1"])


# --------------------------------------------------------------------------- class weights and metrics


def test_class_weights_multiply_poisonous_classes_exactly() -> None:
    counts = [10, 20, 30, 40]
    toxicities = ["poisonous", "edible", "mixed", "poisonous"]
    assert train.class_weights(counts, toxicities, 4.0).tolist() == [4.0, 1.0, 1.0, 4.0]
    assert train.class_weights(counts, toxicities, 1.0).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert train.class_weights(counts, toxicities, 2.5).tolist() == [2.5, 1.0, 1.0, 2.5]
    # inverse frequency N / (C n_c) = 100 / (4 n_c), then x4 on the poisonous classes
    weighted = train.class_weights(counts, toxicities, 4.0, inverse_frequency=True)
    assert weighted.tolist() == pytest.approx([10.0, 1.25, 100 / 120, 2.5], rel=1e-6)
    plain = train.class_weights(counts, toxicities, 1.0, inverse_frequency=True)
    assert plain.tolist() == pytest.approx([2.5, 1.25, 100 / 120, 0.625], rel=1e-6)


def test_class_weights_change_the_loss() -> None:
    """A poisonous image misclassified costs 4x in the summed loss (CrossEntropyLoss(weight=w))."""
    logits = torch.tensor([[0.0, 2.0], [0.0, 2.0]])  # both predicted class 1 (edible)
    targets = torch.tensor([0, 1])  # first is poisonous, wrong; second edible, right
    per_image = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    weights = train.class_weights([1, 1], ["poisonous", "edible"], 4.0)
    loss = torch.nn.CrossEntropyLoss(weight=weights, reduction="sum")(logits, targets)
    assert float(loss) == pytest.approx(4 * float(per_image[0]) + float(per_image[1]), rel=1e-6)
    plain = train.class_weights([1, 1], ["poisonous", "edible"], 1.0)
    unweighted = torch.nn.CrossEntropyLoss(weight=plain, reduction="sum")
    assert float(loss) > float(unweighted(logits, targets)) + 3 * float(per_image[0]) - 1e-5


@pytest.mark.parametrize(
    ("counts", "toxicities", "weight", "inverse", "message"),
    [
        ([1, 2], ["edible"], 4.0, False, "toxicities"),
        ([1, 2], ["edible", "poisonous"], 0.0, False, "positive"),
        ([1, 2], ["edible", "poisonous"], float("nan"), False, "positive"),
        ([0, 2], ["edible", "poisonous"], 4.0, True, "at least one image"),
    ],
)
def test_class_weights_refuse_bad_input(counts, toxicities, weight, inverse, message) -> None:
    with pytest.raises(ValueError, match=message):
        train.class_weights(counts, toxicities, weight, inverse)


def test_dangerous_error_rate_counts_poisonous_predicted_edible() -> None:
    toxicities = ["poisonous", "edible", "inedible", "poisonous", "mixed"]
    true = torch.tensor([0, 0, 0, 0, 3, 3, 1, 1])
    # 0->1 edible (dangerous), 0->2 inedible (not), 0->0 right, 0->4 mixed (not), 3->1 dangerous, 3->0 poisonous (not)
    pred = torch.tensor([1, 2, 0, 4, 1, 0, 0, 1])
    assert train.dangerous_error_rate(true, pred, toxicities) == pytest.approx(2 / 6)
    assert math.isnan(train.dangerous_error_rate(torch.tensor([1, 2]), torch.tensor([1, 1]), toxicities))


def test_poisonous_weight_lowers_dangerous_errors_on_imbalanced_data() -> None:
    """A minority poisonous class overlapping an edible one: weight 4 cuts poisonous->edible errors.

    Linear classifier on 2-D features (the loss weighting is what is under test, and this
    trains in milliseconds, deterministically); the same class_weights vector as the command.
    """
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])  # poisonous, edible, inedible
    toxicities = ["poisonous", "edible", "inedible"]

    def sample(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = [means[c] + 1.2 * torch.randn(n, 2, generator=gen) for c, n in enumerate(counts)]
        return torch.cat(xs), torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])

    train_x, train_y = sample([40, 400, 200])  # poisonous is the minority
    test_x, test_y = sample([1000, 1000, 1000])
    rates = {}
    for weight in (1.0, 4.0):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 3)
        criterion = torch.nn.CrossEntropyLoss(weight=train.class_weights([40, 400, 200], toxicities, weight))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        for _ in range(150):
            optimizer.zero_grad()
            criterion(model(train_x), train_y).backward()
            optimizer.step()
        with torch.no_grad():
            rates[weight] = train.dangerous_error_rate(test_y, model(test_x).argmax(1), toxicities)
    assert rates[1.0] > 0.3  # the imbalance really pushes poisonous photos to edible
    assert rates[4.0] < rates[1.0] - 0.15, rates


# --------------------------------------------------------------------------- augmentation and data


def test_augmentation_is_seeded_and_shaped() -> None:
    images = [prepare_image(make_image(50, 40, seed=s), SIZE) for s in range(3)]
    assert images[0].shape == (3, 40, 40) and images[0].dtype == torch.uint8  # round(1.25 * 32)
    spec = InputSpec(size=SIZE)
    a = augment_batch(images, spec, torch.Generator().manual_seed(7))
    b = augment_batch(images, spec, torch.Generator().manual_seed(7))
    c = augment_batch(images, spec, torch.Generator().manual_seed(8))
    assert a.shape == (3, 3, SIZE, SIZE)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identity_augmentation_is_close_to_the_evaluation_input() -> None:
    """Crop scale 1, ratio 1, no flip/jitter: the training view of a photo is its squash input."""
    image = make_image(120, 70, seed=3)
    spec = InputSpec(size=SIZE)
    identity = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, brightness=0, contrast=0, saturation=0)
    view = augment_batch([prepare_image(image, SIZE)], spec, torch.Generator().manual_seed(0), identity)[0]
    reference = preprocess(image, spec)
    # two resizes (photo -> 40 -> 32) against one (photo -> 32): close, not identical
    assert float((view - reference).abs().mean()) < 0.04
    mirrored = preprocess(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), spec)
    assert float((view - mirrored).abs().mean()) > 0.5  # the bound above is tight enough to tell


def test_crop_params_stay_inside_and_respect_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop_params(40, 40, (0.35, 1.0), (3 / 4, 4 / 3), gen)
        assert 0 <= top and 0 <= left and top + h <= 40 and left + w <= 40
        assert 0.3 * 1600 <= h * w <= 1600


def test_validation_inputs_are_exactly_what_the_app_feeds(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data")
    (root / "train" / "Amanita" / "broken.jpg").write_bytes(b"not a jpeg")
    warnings: list[str] = []
    data = train.load_training_data(root, SIZE, warn=warnings.append)
    assert data.classes == NAMES
    assert data.counts == [2, 2, 2, 2]  # the broken file is skipped...
    assert any("broken.jpg" in w for w in warnings)  # ...and named
    spec = InputSpec(size=SIZE, resize="squash")
    for i, item in enumerate(scan_image_folder(root / "val")):
        assert torch.equal(data.val_inputs[i], preprocess(load_image(item.path), spec))
        assert int(data.val_labels[i]) == NAMES.index(item.label)
    assert data.test_inputs is not None and data.test_inputs.shape == (8, 3, SIZE, SIZE)


def test_resolve_toxicities_from_manifest_else_unknown_with_warning() -> None:
    given = manifest_from_dict({"classes": [{"name": "amanita", "toxicity": "poisonous"}]})
    fallback = manifest_from_dict({"classes": [{"name": "Boletus", "toxicity": "edible"}]})
    warnings: list[str] = []
    result = train.resolve_toxicities(["Amanita", "Boletus", "Xerula"], given, fallback, warnings.append)
    assert result == ["poisonous", "edible", "unknown"]
    assert len(warnings) == 1 and "Xerula" in warnings[0] and "Amanita" not in warnings[0]


def test_example_manifest_matches_the_shared_photos(real_data: Path) -> None:
    manifest = load_manifest(EXAMPLE_MANIFEST)
    assert manifest.class_names == train.find_classes(real_data)
    toxicity = {c.name: c.toxicity for c in manifest.classes}
    assert toxicity == {
        "Amanita": "poisonous", "Boletus": "edible", "Coprinellus": "edible", "Coprinopsis": "mixed",
        "Ganoderma": "inedible", "Gyromitra": "poisonous", "Omphalotus": "poisonous", "Volvopluteus": "edible",
    }


# --------------------------------------------------------------------------- the command, end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All three backbones, 1 epoch of 2 steps on 8 generated images at 32 px, via the command line.

    Returns the output folder; its parent holds ``data/`` and ``given/manifest.json``.
    """
    base = tmp_path_factory.mktemp("trained")
    root = make_dataset(base / "data")
    manifest = write_manifest(base / "given", write_weights=False)
    out = base / "out"
    argv = ["--data", str(root), "--backbone", "all", "--manifest", str(manifest), "--epochs", "1",
            "--image-size", str(SIZE), "--batch-size", "4", "--seed", "3", "--device", "cpu", "--out", str(out)]
    assert run_cli(argv) == 0
    return out


def test_trained_manifest_describes_the_checkpoints(trained: Path) -> None:
    manifest = load_manifest(trained)
    assert [(c.name, c.toxicity) for c in manifest.classes] == CLASSES
    assert manifest.input == InputSpec(size=SIZE, resize="squash")
    assert list(manifest.models) == list(BACKBONES)
    for backbone in BACKBONES:
        assert manifest.models[backbone].checkpoint == f"{backbone}.pt"
        assert manifest.models[backbone].layer == DEFAULT_LAYERS[backbone]
        # a plain state dict of tensors: what torch.load(weights_only=True) accepts
        state = torch.load(trained / f"{backbone}.pt", weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_trained_backbone_loads_in_the_app_and_explains(trained: Path, backbone: str) -> None:
    manifest = load_manifest(trained)
    model = load_catalog_model(manifest, backbone)
    explanation = explain_image(model, make_image(90, 60, seed=5), manifest.input, manifest.models[backbone].layer)
    assert explanation.probabilities.shape == (4,)
    assert float(explanation.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    assert explanation.cam.shape == (1, 1)  # 32 px / stride 32
    assert torch.isfinite(explanation.cam).all()
    with open(trained / f"{backbone}.train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and rows[0]["best"] == "1"
    assert 0.0 <= float(rows[0]["val_accuracy"]) <= 1.0
    summary = json.loads((trained / f"{backbone}.train.json").read_text())
    assert summary["best_epoch"] == 1 and summary["interrupted"] is False
    assert summary["test"]["images"] == 8 and summary["val"]["images"] == 8
    assert [c["name"] for c in summary["classes"]] == NAMES


def test_same_seed_same_weights_other_seed_other_start(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retraining MobileNetV3 alone with the fixture's settings and seed 3 gives its exact weights;
    seed 4 starts from other weights (checked with the epochs stubbed out: what is saved is the start)."""
    config = train.TrainConfig(epochs=1, image_size=SIZE, batch_size=4, seed=3, device="cpu")
    given = load_manifest(trained.parent / "given")
    data = trained.parent / "data"

    def retrain(seed: int) -> dict[str, torch.Tensor]:
        out = tmp_path / f"seed{seed}-{len(list(tmp_path.iterdir()))}"
        seeded = dataclasses.replace(config, seed=seed)
        train.train(data, ["mobilenet_v3_large"], out, seeded, given, report=lambda line: None)
        return torch.load(out / "mobilenet_v3_large.pt", weights_only=True)

    reference = torch.load(trained / "mobilenet_v3_large.pt", weights_only=True)
    again = retrain(3)
    assert all(torch.equal(again[k], reference[k]) for k in reference)
    monkeypatch.setattr(loop, "_train_epoch", lambda *args, **kwargs: (0.0, 0.0))
    start3, start4 = retrain(3), retrain(4)
    assert not all(torch.equal(start3[k], reference[k]) for k in reference)  # the stub trained nothing
    assert not torch.equal(start3["features.0.0.weight"], start4["features.0.0.weight"])


def test_toxicity_is_unknown_without_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    argv = ["--data", str(root), "--backbone", "mobilenet_v3_large", "--epochs", "1", "--image-size", str(SIZE),
            "--batch-size", "4", "--out", str(tmp_path / "out")]
    assert run_cli(argv) == 0
    assert "toxicity unknown for Amanita, Boletus, Gyromitra, Suillus" in capsys.readouterr().err
    manifest = load_manifest(tmp_path / "out")
    assert manifest.class_names == NAMES and {c.toxicity for c in manifest.classes} == {"unknown"}
    summary = json.loads((tmp_path / "out" / "mobilenet_v3_large.train.json").read_text())
    assert summary["val"]["dangerous_error_rate"] is None  # undefined: no class is known to be poisonous


def test_ctrl_c_keeps_the_best_checkpoint_and_a_matching_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    # an earlier run for the same classes and input left a resnet50: it must stay listed
    write_manifest(out, backbones=("resnet50",), size=SIZE)
    real_epoch = loop._train_epoch
    calls = []

    def interrupted_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", interrupted_epoch)
    argv = ["--data", str(root), "--backbone", "mobilenet_v3_large", "--manifest", str(out), "--epochs", "5",
            "--image-size", str(SIZE), "--batch-size", "4", "--device", "cpu", "--out", str(out)]
    assert run_cli(argv) == 130
    assert "keeps epoch 1" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert list(manifest.models) == ["resnet50", "mobilenet_v3_large"]
    assert [(c.name, c.toxicity) for c in manifest.classes] == CLASSES  # from the earlier manifest
    model = load_catalog_model(manifest, "mobilenet_v3_large")
    assert explain_image(model, make_image(seed=1), manifest.input, "features.16").probabilities.shape == (4,)
    with open(out / "mobilenet_v3_large.train.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]
    assert json.loads((out / "mobilenet_v3_large.train.json").read_text())["interrupted"] is True
    assert not list(out.glob("*.tmp"))


def test_ctrl_c_during_a_save_is_deferred_until_it_is_complete() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with output.shielded_from_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is delivered here, while "saving"
            steps.append("saved")
            steps.append("manifest written")
    assert steps == ["saved", "manifest written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_ctrl_c_before_the_first_epoch_writes_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dataset(tmp_path / "data")
    out = tmp_path / "out"

    def interrupted_epoch(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train_epoch", interrupted_epoch)
    config = train.TrainConfig(epochs=2, image_size=SIZE, batch_size=4, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train.train(root, ["mobilenet_v3_large"], out, config, report=lambda line: None)
    assert not (out / "mobilenet_v3_large.pt").exists()
    assert not (out / "manifest.json").exists()


def test_incompatible_output_manifest_is_refused_before_training(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_manifest(out, backbones=("resnet50",), size=64)  # 64 px, with a resnet50 file
    before = (out / "manifest.json").read_text()
    with pytest.raises(ValueError, match="resnet50.*another --out folder"):
        train.plan_output(out, NAMES, InputSpec(size=SIZE), ["mobilenet_v3_large"])
    # retraining that very backbone replaces it (nothing else would be orphaned)
    notes: list[str] = []
    _, entries = train.plan_output(out, NAMES, InputSpec(size=SIZE), ["resnet50"], notes.append)
    assert entries == {} and "replaced" in notes[0]
    # same classes and input: the entries stay
    _, kept = train.plan_output(out, NAMES, InputSpec(size=64), ["mobilenet_v3_large"])
    assert list(kept) == ["resnet50"]
    assert (out / "manifest.json").read_text() == before


# --------------------------------------------------------------------------- --pretrained


def test_pretrained_offline_is_a_clear_error_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    root = make_dataset(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["--data", str(root), "--backbone", "all", "--pretrained", "--epochs", "1",
            "--image-size", str(SIZE), "--out", str(out)]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not download ImageNet weights for resnet50")
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_pretrained_starts_from_the_cached_imagenet_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backbone = "mobilenet_v3_large"
    path = imagenet_weights_path(backbone)
    assert str(path).startswith(str(tmp_path))
    write_checkpoint(path, backbone, 1000, seed=11)
    imagenet = torch.load(path, weights_only=True)
    model = train.initial_model(backbone, 4, pretrained=True)
    state = model.state_dict()
    assert state["classifier.3.weight"].shape == (4, 1280)
    trunk = [k for k in state if not k.startswith("classifier.3.")]
    assert all(torch.equal(state[k], imagenet[k]) for k in trunk)
    scratch = train.initial_model(backbone, 4, pretrained=False).state_dict()
    assert not torch.equal(scratch["features.0.0.weight"], imagenet["features.0.0.weight"])


# --------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "missing-folder"}, "data folder not found"),
        ({"--batch-size": "1"}, "--batch-size must be at least 2"),
        ({"--epochs": "0"}, "--epochs must be at least 1"),
        ({"--image-size": "16"}, "--image-size must be between 32"),
        ({"--poisonous-weight": "-1"}, "--poisonous-weight must be positive"),
        ({"--manifest": "nowhere.json"}, "manifest not found"),
    ],
)
def test_bad_arguments_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    root = make_dataset(tmp_path / "data", per_class=1)
    options = {"--data": str(root), "--backbone": "mobilenet_v3_large", "--image-size": str(SIZE),
               "--out": str(tmp_path / "out")}
    options.update({k: (str(tmp_path / v) if k in ("--data", "--manifest") else v) for k, v in change.items()})
    assert run_cli([x for pair in options.items() for x in pair]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_missing_val_folder_and_stray_class_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    write_image_folder(root / "train", NAMES[:2], per_class=1)
    argv = ["--data", str(root), "--backbone", "resnet50", "--out", str(tmp_path / "out")]
    assert run_cli(argv) == 2
    assert "no val/ folder" in capsys.readouterr().err
    write_image_folder(root / "val", [*NAMES[:2], "Xerula"], per_class=1)
    assert run_cli(argv) == 2
    assert "class folders that train/ lacks: Xerula" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_refused() -> None:
    if torch.cuda.is_available():
        assert train.resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train.resolve_device("cuda")
    assert train.resolve_device("cpu").type == "cpu"


def test_training_uses_batchnorm_momentum_0_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MobileNetV3 ships with momentum 0.01: with few steps per epoch its running statistics lag
    and the eval-mode model predicts one class (seen on the shared photos). Training sets 0.1."""
    assert {m.momentum for m in build_model("mobilenet_v3_large", 4).modules()
            if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}
    seen = []

    def record(model, *args, **kwargs):
        seen.extend(m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        return 0.0, 0.0

    monkeypatch.setattr(loop, "_train_epoch", record)
    root = make_dataset(tmp_path / "data", per_class=1)
    config = train.TrainConfig(epochs=1, image_size=SIZE, batch_size=4, device="cpu")
    train.train(root, ["mobilenet_v3_large"], tmp_path / "out", config, report=lambda line: None)
    assert len(seen) > 40 and set(seen) == {0.1}


def test_scratch_model_matches_the_registry() -> None:
    torch.manual_seed(0)
    a = train.initial_model("resnet50", 3, pretrained=False)
    torch.manual_seed(0)
    b = build_model("resnet50", 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_batch_ticker_speaks_every_few_seconds_and_at_the_end() -> None:
    """Progress within an epoch: batches done/total, photos/s and an ETA; not one line per batch."""
    now = [0.0]
    lines: list[str] = []
    ticker = output.BatchTicker("resnet50 epoch 1/3", lines.append, every=5.0, clock=lambda: now[0])
    ticker.start(10)
    for _ in range(10):
        now[0] += 1.0  # one second per batch of 8 photos
        ticker.batch_done(8)
    assert len(lines) == 2  # at 5 s and at the end (10 s); never 10 lines
    assert lines[0] == "  resnet50 epoch 1/3: batch 5/10, 8.0 photos/s, ETA 5 s"
    assert lines[1] == "  resnet50 epoch 1/3: batch 10/10, 8.0 photos/s, done"


def test_training_reports_progress_and_a_chance_level_epoch(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data")
    config = train.TrainConfig(epochs=1, image_size=SIZE, batch_size=4, device="cpu")
    lines: list[str] = []
    (result,) = train.train(root, ["mobilenet_v3_large"], tmp_path / "out", config, report=lines.append)
    progress = [line for line in lines if ": batch " in line]
    assert progress and progress[-1].endswith("done") and "photos/s" in progress[-1]
    assert len(progress) <= 3  # a tiny epoch: the end line, not a flood
    n = result.val.images
    if output.chance_note(result, 4) is not None:  # a seconds-long run on 4 classes is at chance
        assert any(f"kept epoch {result.best_epoch}/{result.epochs_run}" in line and "not above chance (25.0 % "
                   "for 4 classes" in line and f"n = {n}" in line for line in lines)
    else:
        assert not any("not above chance" in line for line in lines)


def test_chance_note_words() -> None:
    val = train.SplitMetrics(loss=2.0, accuracy=0.128, dangerous_error_rate=0.0, images=78)
    result = train.TrainResult(backbone="resnet50", checkpoint=Path("resnet50.pt"), log=Path("x.csv"), best_epoch=2,
                               epochs_run=6, val=val, test=None, seconds=1.0, stopped_early=False, interrupted=False)
    note = output.chance_note(result, 8)
    assert note is not None and note.startswith("resnet50: kept epoch 2/6, val acc 12.8 %: not above chance "
                                                "(12.5 % for 8 classes")
    good = dataclasses.replace(result, val=dataclasses.replace(val, accuracy=0.9))
    assert output.chance_note(good, 8) is None
