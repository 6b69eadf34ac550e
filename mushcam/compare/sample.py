"""Which images the comparison shows: loading them, and a deterministic, balanced sample.

- :class:`CompareImage` is one image (full resolution for the model, a display copy to draw).
- :func:`select_sample` draws a deterministic sample from a test folder (``root/<Class>/*``),
  balanced between poisonous and other classes and, when an ``outcome`` function can tell
  whether the models got an image right, mixing correct and wrong predictions.
- :func:`gather_images` turns the command line's inputs (files, or one folder) into images.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mushcam.data import (
    DISPLAY_MAX_SIDE,
    IMAGE_EXTENSIONS,
    LabelledImage,
    decode_image,
    image_sha256,
    printable,
    read_bytes,
)
from mushcam.exceptions import MushcamError
from mushcam.manifest import Manifest
from mushcam.render import fit_within
from mushcam.toxicity import Toxicity

DEFAULT_SAMPLE_SIZE = 12

OutcomeFn = Callable[[LabelledImage], "bool | None"]


# --- images ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CompareImage:
    """One image of the comparison: full-resolution RGB (what the model sees, as on the Explain
    page and in the batch pipeline), its file hash, its label if known, and optionally a
    smaller copy to draw from (``display``; pictures are drawn from it when given)."""

    name: str
    image: Image.Image
    sha256: str  # of the file's bytes: the image's identity in every cache
    label: str | None = None  # the true class as given (a folder name); None = unknown
    display: Image.Image | None = None

    @property
    def preview(self) -> Image.Image:
        """The image to draw pictures from: the display copy when there is one."""
        return self.display if self.display is not None else self.image


def load_compare_image(source: str | Path | bytes, name: str, label: str | None = None) -> CompareImage:
    """Read and decode an image safely (see :func:`mushcam.data.load_image`), with a display copy."""
    data = read_bytes(source)
    image = decode_image(data)
    return CompareImage(name, image, image_sha256(data), label, fit_within(image, DISPLAY_MAX_SIDE))


def manifest_class(manifest: Manifest, label: str | None) -> str | None:
    """The manifest's class name for a folder label (exact, then case-insensitive); None if absent."""
    if label is None:
        return None
    try:
        return manifest.class_names[manifest.class_index(label)]
    except KeyError:
        return None


def label_toxicity(manifest: Manifest, label: str | None) -> str:
    """Toxicity of a folder label per the manifest ('unknown' when the class is not listed)."""
    name = manifest_class(manifest, label)
    return manifest.toxicity(name) if name is not None else "unknown"


# --- sampling -------------------------------------------------------------------------

def _class_slots(pools: Mapping[str, list[LabelledImage]], poisonous: set[str], m: int,
                 rng: np.random.Generator) -> list[str]:
    """The class of each of ``m`` picks: turns alternate poisonous / other classes (when both
    have images left), and inside a group go round-robin over its classes in a seeded order."""
    groups = [sorted(c for c in pools if c in poisonous), sorted(c for c in pools if c not in poisonous)]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups]
    left = {c: len(pools[c]) for c in pools}
    cursor = [0, 0]
    slots: list[str] = []
    turn = 0
    while len(slots) < m:
        order = (turn, 1 - turn)
        for g in order:
            classes = groups[g]
            live = [c for c in classes if left[c] > 0]
            if not live:
                continue
            while left[classes[cursor[g] % len(classes)]] == 0:
                cursor[g] += 1
            chosen = classes[cursor[g] % len(classes)]
            cursor[g] += 1
            left[chosen] -= 1
            slots.append(chosen)
            break
        turn = 1 - turn
    return slots


def select_sample(
    items: Sequence[LabelledImage],
    manifest: Manifest,
    n: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    outcome: OutcomeFn | None = None,
    max_checks: int | None = None,
) -> list[LabelledImage]:
    """A deterministic sample of ``n`` images from a scanned test folder.

    Balanced between poisonous classes (toxicity from the manifest) and the others: the
    picks alternate between the two groups, round-robin over the classes of each. With
    ``outcome(item)`` (True = every model right, False = some model wrong, None = cannot
    tell), candidates are checked in seeded order until half the picks (rounded down) are
    wrong predictions and the rest correct, or ``max_checks`` (default 3 n) checks are spent;
    the page and the command line compute the outcome with the same cached maps they show.
    The result is sorted: poisonous classes first, then by class and path.
    """
    if n < 1:
        raise MushcamError(f"the sample size must be at least 1, got {n}")
    if not items:
        raise MushcamError("the folder holds no images (expected <folder>/<Class>/<image>)")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[LabelledImage]] = {}
    for item in sorted(items, key=lambda i: i.relpath):
        by_class.setdefault(item.label, []).append(item)
    pools = {c: [group[i] for i in rng.permutation(len(group))] for c, group in sorted(by_class.items())}
    poisonous = {c for c in pools if label_toxicity(manifest, c) == Toxicity.POISONOUS}
    slots = _class_slots(pools, poisonous, min(n, len(items)), rng)

    chosen: list[LabelledImage] = []
    if outcome is None:
        taken = {c: 0 for c in pools}
        for c in slots:
            chosen.append(pools[c][taken[c]])
            taken[c] += 1
    else:
        budget = 3 * len(slots) if max_checks is None else max_checks
        known: dict[str, bool | None] = {}
        want = {False: len(slots) // 2, True: len(slots) - len(slots) // 2}
        used: set[str] = set()
        for c in slots:
            need = False if want[False] >= want[True] else True
            candidates = [item for item in pools[c] if item.relpath not in used]
            pick = None
            for item in candidates:
                if item.relpath not in known:
                    if len(known) >= budget:
                        break
                    known[item.relpath] = outcome(item)
                if known[item.relpath] is need:
                    pick = item
                    break
            if pick is None:  # none of the wanted kind within budget: take the class's next one
                pick = candidates[0]
            used.add(pick.relpath)
            chosen.append(pick)
            result = known.get(pick.relpath)
            if result is not None:
                want[result] = max(0, want[result] - 1)
    return sorted(chosen, key=lambda i: (i.label not in poisonous, i.label, i.relpath))


def flat_folder_images(folder: Path) -> list[Path]:
    """Images directly inside ``folder`` (no class sub-folders), sorted by name."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def gather_images(inputs: Sequence[str], manifest: Manifest, n: int, seed: int,
                  outcome_for: Callable[[Callable[[LabelledImage], CompareImage]], OutcomeFn] | None = None,
                  ) -> list[CompareImage]:
    """The images named on the command line, or a sample of one folder."""
    paths = [Path(p).expanduser() for p in inputs]
    folders = [p for p in paths if p.is_dir()]
    if folders:
        if len(paths) > 1:
            raise MushcamError("give either one folder to sample from, or image files (not both, not several folders)")
        from mushcam.data import scan_images

        folder = folders[0]
        scan = scan_images(folder)
        for relpath, reason in scan.skipped:
            print(f"skipped {relpath}: {reason}", file=sys.stderr)
        items = scan.images
        if items:
            cache: dict[str, CompareImage] = {}

            def load(item: LabelledImage) -> CompareImage:
                if item.relpath not in cache:
                    cache[item.relpath] = _load_named(item.path, item.relpath, item.label)
                return cache[item.relpath]

            outcome = outcome_for(load) if outcome_for is not None else None
            return [load(item) for item in select_sample(items, manifest, n, seed, outcome)]
        flat = flat_folder_images(folder)
        if not flat:
            raise MushcamError(f"no images in {folder} (expected {folder}/<Class>/<image> or images in the folder)")
        if len(flat) > n:
            flat = [flat[i] for i in sorted(np.random.default_rng(seed).choice(len(flat), n, replace=False))]
        return [_load_named(p, printable(p.name), None) for p in flat]
    images = []
    for path in paths:
        if not path.exists():
            raise MushcamError(f"no such file or folder: {printable(path)}")
        label = path.parent.name if manifest_class(manifest, path.parent.name) is not None else None
        images.append(_load_named(path, printable(path.name), label))
    return images


def _load_named(path: Path, name: str, label: str | None) -> CompareImage:
    try:
        return load_compare_image(path, name, label)
    except ValueError as exc:
        raise MushcamError(f"{printable(path)}: {exc}") from None
