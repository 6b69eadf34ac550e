"""Embeddings of training photos: the pooled features by hand, cached per checkpoint, reused, invalidated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from factories import CLASSES, make_image, write_checkpoint, write_manifest

from mushcam.cache import CamCache
from mushcam.catalog import load_catalog_entry
from mushcam.data import load_image, preprocess
from mushcam.lookalike import build_index, head_module, look_alikes, model_digest, pooled_features, training_photos
from mushcam.lookalike.store import load_index
from mushcam.manifest import load_manifest

NAMES = [name for name, _ in CLASSES]


def _photos(root: Path, per_class: int = 3) -> Path:
    for ci, name in enumerate(NAMES):
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            make_image(72, 56, seed=100 * ci + k).save(root / "train" / name / f"img_{k}.png")
    return root


class _Counter:
    """Counts the model's forward passes (a pre-hook on the whole model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: object) -> None:
        self.calls += 1


@pytest.fixture
def resnet(tmp_path: Path):
    manifest = load_manifest(write_manifest(tmp_path / "ckpt", backbones=("resnet50",)))
    return manifest, load_catalog_entry(manifest, "resnet50").model


def test_resnet50_embedding_is_flatten_avgpool_layer4_by_hand(resnet) -> None:
    _, model = resnet
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    features, logits = pooled_features(model, x)
    m = model.eval()
    with torch.no_grad():
        trunk = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        expected = torch.flatten(m.avgpool(trunk), 1)
        assert torch.allclose(logits, m.fc(expected), atol=1e-5)
    assert features.shape == (2, 2048)
    assert torch.allclose(features, expected, atol=1e-6, rtol=1e-5)
    assert head_module(model)[0] == "fc"


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mobilenet_v3_large"])
def test_other_backbones_embed_the_pooled_trunk_features(arch: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=4)
    x = torch.rand(1, 3, 64, 64)
    model.train()
    features, _ = pooled_features(model, x)
    assert model.training and all(m.training for m in model.modules())  # training mode restored
    with torch.no_grad():
        expected = torch.flatten(model.eval().avgpool(model.features(x)), 1)
    assert torch.allclose(features, expected, atol=1e-6, rtol=1e-5)
    assert not any(m._forward_pre_hooks for m in model.modules())  # the hook is gone


def test_the_hook_is_removed_when_the_forward_fails(resnet) -> None:
    _, model = resnet
    with pytest.raises(RuntimeError):
        pooled_features(model, torch.rand(1, 5, 64, 64))  # wrong channel count
    assert not model.fc._forward_pre_hooks


def test_index_matches_features_by_hand_and_is_reused_with_no_model_call(resnet, tmp_path: Path) -> None:
    manifest, model = resnet
    photos = training_photos(_photos(tmp_path / "data"))
    cache = CamCache(tmp_path / "cams")
    digest = model_digest(manifest, "resnet50", cache)
    counter = _Counter(model)
    built = build_index(model, photos, manifest.input, tmp_path / "emb", digest, batch_size=5, dtype="float32")
    assert built.computed == len(photos) == 12 and built.reused == 0
    assert counter.calls == 3  # 12 photos in batches of 5
    batch = torch.stack([preprocess(load_image(p.path), manifest.input) for p in photos])
    by_hand, _ = pooled_features(model, batch)
    assert np.allclose(built.index.embeddings(), by_hand.numpy(), rtol=1e-5, atol=1e-6)
    assert list(built.index.labels) == [p.label for p in photos]

    counter.calls = 0
    again = build_index(model, photos, manifest.input, tmp_path / "emb", digest, batch_size=5, dtype="float32")
    assert counter.calls == 0 and again.computed == 0  # a later session: read from disk, no forward
    assert np.array_equal(np.asarray(again.index.vectors), np.asarray(built.index.vectors))


def test_a_new_photo_costs_one_forward_and_float16_stays_close(resnet, tmp_path: Path) -> None:
    manifest, model = resnet
    root = _photos(tmp_path / "data", per_class=2)
    digest = model_digest(manifest, "resnet50", CamCache(tmp_path / "cams"))
    first = build_index(model, training_photos(root), manifest.input, tmp_path / "emb", digest)
    make_image(72, 56, seed=999).save(root / "train" / "Amanita" / "new.png")
    counter = _Counter(model)
    second = build_index(model, training_photos(root), manifest.input, tmp_path / "emb", digest)
    assert counter.calls == 1 and second.computed == 1 and second.reused == len(first.index)
    assert second.index.vectors.dtype == np.float16
    exact, _ = pooled_features(model, torch.stack([preprocess(make_image(72, 56, seed=999), manifest.input)]))
    row = second.index.paths.index("train/Amanita/new.png")
    scale = float(exact.abs().max())
    assert np.allclose(second.index.embeddings()[row], exact[0].numpy(), rtol=2e-3, atol=1e-4 * scale)
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 1  # the older vectors file was removed


def test_a_changed_checkpoint_gets_new_embeddings(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    manifest = load_manifest(write_manifest(folder, backbones=("mobilenet_v3_large",)))
    photos = training_photos(_photos(tmp_path / "data", per_class=1))
    cache = CamCache(tmp_path / "cams")
    model = load_catalog_entry(manifest, "mobilenet_v3_large").model
    old_digest = model_digest(manifest, "mobilenet_v3_large", cache)
    old = build_index(model, photos, manifest.input, tmp_path / "emb", old_digest)
    write_checkpoint(folder / "mobilenet_v3_large.pt", "mobilenet_v3_large", len(CLASSES), seed=7)  # retrained
    new_model = load_catalog_entry(manifest, "mobilenet_v3_large").model
    new_digest = model_digest(manifest, "mobilenet_v3_large", cache)
    assert new_digest != old_digest
    counter = _Counter(new_model)
    new = build_index(new_model, photos, manifest.input, tmp_path / "emb", new_digest)
    assert counter.calls == 1 and new.computed == len(photos)
    assert new.index.key != old.index.key
    assert not np.allclose(np.asarray(new.index.vectors, np.float32), np.asarray(old.index.vectors, np.float32))


def test_a_vectors_file_that_does_not_match_its_index_is_a_miss(resnet, tmp_path: Path) -> None:
    manifest, model = resnet
    photos = training_photos(_photos(tmp_path / "data", per_class=1))
    built = build_index(model, photos, manifest.input, tmp_path / "emb", "d" * 64)
    (npy,) = (tmp_path / "emb").glob("*.npy")
    np.save(npy, np.zeros((2, 3), np.float16))
    assert load_index(tmp_path / "emb", built.index.key) is None
    assert build_index(model, photos, manifest.input, tmp_path / "emb", "d" * 64).computed == len(photos)


def test_look_alikes_of_a_training_photo_are_its_own_class_first(resnet, tmp_path: Path) -> None:
    manifest, model = resnet
    root = _photos(tmp_path / "data")
    photos = training_photos(root)
    index = build_index(model, photos, manifest.input, tmp_path / "emb", "e" * 64).index
    image = make_image(72, 56, seed=101)  # Boletus img_1: its own photo is the nearest of its class
    found = look_alikes(model, image, manifest.input, index, manifest.class_names, true="Boletus", k=2)
    assert found.predicted in NAMES and 0 <= found.confidence <= 1
    pool = found.of_true if found.true != found.predicted else found.of_predicted
    assert pool[0].path == "train/Boletus/img_1.png" and pool[0].distance < 1e-3
    assert all(n.label == found.predicted for n in found.of_predicted)


def test_a_photo_that_cannot_be_decoded_is_left_out_and_the_file_is_not_rewritten(resnet, tmp_path: Path) -> None:
    manifest, model = resnet
    root = _photos(tmp_path / "data", per_class=1)
    (root / "train" / "Amanita" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    first = build_index(model, training_photos(root), manifest.input, tmp_path / "emb", "f" * 64)
    assert len(first.index) == 4 and [path for path, _ in first.unreadable] == ["train/Amanita/broken.png"]
    (npy,) = (tmp_path / "emb").glob("*.npy")
    again = build_index(model, training_photos(root), manifest.input, tmp_path / "emb", "f" * 64)
    assert again.computed == 0 and again.unreadable == first.unreadable
    assert list((tmp_path / "emb").glob("*.npy")) == [npy]
