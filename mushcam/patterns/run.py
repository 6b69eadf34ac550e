"""The patterns job over a test folder: maps, object regions, focus, strategy clusters, concepts.

One model at a time. Maps come from the CAM cache (computed and stored when missing);
regions come from the results store, then a regions file (CSV or COCO), then (when asked)
GrabCut proposals for the photos still without one; imported and proposed regions are
saved to the store. Activations for the concepts are read one class at a time (a batch of
photos at a time), so memory does not grow with the number of classes. Everything the job
finds is returned as a :class:`PatternsResult`; the numbers are also written to the store.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mushcam.cache import CamCache
from mushcam.catalog import load_catalog_entry
from mushcam.data import decode_image, preprocess, read_bytes
from mushcam.evaluate import Progress, TestImage, scan_test_set
from mushcam.exceptions import MushcamError
from mushcam.manifest import Manifest
from mushcam.methods import DEFAULT_METHOD
from mushcam.patterns import store as patterns_store
from mushcam.patterns.cluster import DEFAULT_MAX_K
from mushcam.patterns.concepts import DEFAULT_CONCEPTS, ClassConcepts, class_concepts
from mushcam.patterns.focus import FocusSummary, PhotoFocus, focus_of_map, summarise_focus
from mushcam.patterns.maps import ModelMaps, collect_maps
from mushcam.patterns.regions import Region, propose_region, read_regions
from mushcam.patterns.strategies import ClassStrategies, class_members, class_strategies


@dataclass(frozen=True)
class PatternsSettings:
    """What to compute: the CAM method, how a class's photos are chosen, the most clusters,
    the concepts per class (0: none), whether to propose regions, the seed and batch size."""

    method: str = DEFAULT_METHOD
    group_by: str = "predicted"
    max_k: int = DEFAULT_MAX_K
    concepts: int = DEFAULT_CONCEPTS
    propose_regions: bool = False
    seed: int = 0
    batch_size: int = 16

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelPatterns:
    """Everything found for one model."""

    maps: ModelMaps
    strategies: tuple[ClassStrategies, ...]
    concepts: tuple[ClassConcepts, ...]
    focus: FocusSummary | None
    photo_focus: Mapping[str, PhotoFocus] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.maps.model


@dataclass(frozen=True)
class PatternsResult:
    data_root: Path
    class_names: tuple[str, ...]
    settings: PatternsSettings
    regions: Mapping[str, Region]  # by photo path
    models: tuple[ModelPatterns, ...]


def _no_progress(_label: str, _done: int, _total: int) -> None:
    return None


class Photos:
    """The test photos, decoded on demand (once) for their size and for GrabCut."""

    def __init__(self, images: Sequence[TestImage]) -> None:
        self.by_path = {item.relpath: item for item in images}
        self.sizes: dict[str, tuple[int, int]] = {}

    def size(self, relpath: str) -> tuple[int, int]:
        if relpath not in self.sizes:
            self.sizes[relpath] = decode_image(read_bytes(self.by_path[relpath].path)).size
        return self.sizes[relpath]


def gather_regions(
    maps: ModelMaps, photos: Photos, store: Path | None, regions_file: str | Path | None, propose: bool,
    log: Callable[[str], None], progress: Callable[[str, int, int], None] = _no_progress,
) -> dict[str, Region]:
    """Each photo's region by path: the store's, then the file's (which wins), then proposals
    (``progress("regions", done, total)`` after each: GrabCut takes ~0.2 s a photo)."""
    sha_of = {m.relpath: m.image_sha256 for m in maps.maps}
    path_of = {sha: path for path, sha in sha_of.items()}
    stored = patterns_store.load_regions(store) if store is not None and store.is_file() else {}
    found = {path_of[sha]: region for sha, region in stored.items() if sha in path_of}
    new: list[Region] = []
    if regions_file is not None:
        imported = [r for r in read_regions(regions_file) if r.path in sha_of]
        log(f"{len(imported)} region(s) of these photos in {regions_file}")
        new.extend(imported)
    if propose:
        wanted = [path for path in sha_of if path not in found and path not in {r.path for r in new}]
        for done, path in enumerate(wanted, start=1):
            new.append(propose_region(decode_image(read_bytes(photos.by_path[path].path)), path))
            progress("regions", done, len(wanted))
        log(f"{len(wanted)} region(s) proposed by GrabCut (marked 'proposed' until a reviewer accepts them)")
    for region in new:
        found[region.path] = region
    if store is not None and new:
        patterns_store.save_regions(store, [(sha_of[r.path], r) for r in new])
    return found


def photo_focus(
    maps: ModelMaps, regions: Mapping[str, Region], photos: Photos, manifest: Manifest,
) -> dict[str, PhotoFocus]:
    """The focus numbers of every photo that has a region."""
    return {m.relpath: focus_of_map(m.cam, photos.size(m.relpath), manifest.input, regions[m.relpath].box)
            for m in maps.maps if m.relpath in regions}


def concept_batches(members: Sequence[str], photos: Photos, manifest: Manifest, batch_size: int,
                    progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[list[str], torch.Tensor]]:
    """(paths, preprocessed inputs) a batch at a time; ``progress(photos done, photos)`` before each."""
    for first in range(0, len(members), batch_size):
        if progress is not None:
            progress(first, len(members))
        chunk = list(members[first:first + batch_size])
        inputs = [preprocess(decode_image(read_bytes(photos.by_path[p].path)), manifest.input) for p in chunk]
        yield chunk, torch.stack(inputs)


def model_concepts(manifest: Manifest, maps: ModelMaps, photos: Photos, settings: PatternsSettings,
                   progress: Callable[[str, int, int], None] = _no_progress) -> tuple[ClassConcepts, ...]:
    """DFF concepts of every class (one class's activations in memory at a time); ``progress("concepts of
    CLASS", photos done, photos)`` before each batch, ``progress("concepts of CLASS · factorising",
    iterations done, iterations)`` during the NMF and ``progress("concepts", classes done, classes)``
    after each class (it may raise to stop)."""
    loaded = load_catalog_entry(manifest, maps.model)
    try:
        found = []
        for index, name in enumerate(manifest.class_names):
            members = [m.relpath for m in class_members(maps, index, settings.group_by)]
            if members:
                batches = concept_batches(members, photos, manifest, settings.batch_size,
                                          lambda done, total, n=name: progress(f"concepts of {n}", done, total))
                found.append(class_concepts(
                    loaded.model, maps.layer or loaded.layer, batches, index, name, settings.concepts, settings.seed,
                    lambda done, total, n=name: progress(f"concepts of {n} · factorising", done, total)))
            progress("concepts", index + 1, manifest.num_classes)
        return tuple(found)
    finally:
        del loaded
        gc.collect()


def run_patterns(
    data_root: str | Path,
    manifest: Manifest,
    models: Sequence[str],
    cache: CamCache,
    store: str | Path | None = None,
    settings: PatternsSettings = PatternsSettings(),
    regions_file: str | Path | None = None,
    limit: int | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
) -> PatternsResult:
    """Patterns of every named model on the photos under ``data_root/<Class>/``.

    ``progress(label, done, total)`` is called after every map ("NAME · maps"), every GrabCut
    proposal ("regions"), every class's clusters ("NAME · clusters"), before every batch of a
    class's concepts ("NAME · concepts of CLASS") and after each class's ("NAME · concepts"), so
    no step runs longer than one photo or one batch without a report. An exception raised
    from it stops the job there (the page's Stop button does this); what was already saved
    stays (each save is one transaction) and this model's numbers are not written.
    """
    if not models:
        raise MushcamError("name at least one model (--model NAME)")
    test_set = scan_test_set(data_root, manifest)
    images = list(test_set.images)
    if limit:
        step = max(len(images) / limit, 1.0)
        images = [images[int(i * step)] for i in range(min(limit, len(images)))]
    if not images:
        raise MushcamError(f"no images of the manifest's classes under {test_set.root}")
    photos = Photos(images)
    store_path = Path(store).expanduser() if store is not None else None
    regions: dict[str, Region] = {}
    found = []
    report = progress or _no_progress
    for number, name in enumerate(models):
        maps = collect_maps(manifest, name, images, cache, settings.method,
                            lambda done, total, n=name: report(f"{n} · maps", done, total), log)
        log(f"{name}: {len(maps.maps)} maps ({maps.computed} computed, the rest from the cache)")
        if number == 0:
            regions = gather_regions(maps, photos, store_path, regions_file, settings.propose_regions, log,
                                     report)
        found.append(_model_patterns(maps, manifest, photos, regions, settings, store_path, str(test_set.root),
                                     lambda label, done, total, n=name: report(f"{n} · {label}", done, total)))
    return PatternsResult(test_set.root, tuple(manifest.class_names), settings, regions, tuple(found))


def _model_patterns(maps: ModelMaps, manifest: Manifest, photos: Photos, regions: Mapping[str, Region],
                    settings: PatternsSettings, store: Path | None, data_root: str,
                    progress: Callable[[str, int, int], None]) -> ModelPatterns:
    focus_by_path = photo_focus(maps, regions, photos, manifest)
    summary = summarise_focus(list(focus_by_path.values()), settings.seed) if focus_by_path else None
    found = []
    for index in range(manifest.num_classes):
        found.append(class_strategies(maps, manifest.class_names, index, settings.group_by, focus_by_path,
                                      settings.max_k, settings.seed))
        progress("clusters", index + 1, manifest.num_classes)
    strategies = tuple(s for s in found if s.clusters)
    concepts = model_concepts(manifest, maps, photos, settings, progress) if settings.concepts > 0 else ()
    if store is not None:
        key = patterns_store.PatternsKey(maps.model, maps.checkpoint_sha256, maps.method, data_root)
        patterns_store.save_clusters(store, key, strategies)
        if summary is not None:
            patterns_store.save_focus(store, key, maps.layer, summary)
    return ModelPatterns(maps, strategies, concepts, summary, focus_by_path)


def progress_bars(stream=None) -> Callable[[str, int, int], None]:  # noqa: ANN001
    """A ``progress(label, done, total)`` that draws one :class:`mushcam.evaluate.Progress` bar per label
    counted in photos (the maps and the GrabCut proposals); the per-class and per-iteration reports
    are for the page's bar and Stop."""
    bars: dict[str, Progress] = {}

    def update(label: str, done: int, total: int) -> None:
        if not (label.endswith(" · maps") or label == "regions"):
            return
        if label not in bars:
            bars[label] = Progress(label, total, stream)
        bars[label].update(done)

    return update
