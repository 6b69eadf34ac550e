"""Which torchvision architecture a state dict's keys belong to (for errors that say what to set).

Key names identify a family cheaply (``layer1.0.conv1.weight``: a ResNet); the family's
members are then compared by names and shapes on ``meta`` skeletons, so naming the exact
variant costs a few skeletons, not all eighty.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from mushcam.models.registry import ArchitectureError, skeleton, torchvision_architectures

# (a key fragment only that family has, the architecture-name prefixes of the family)
_FAMILY_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("encoder.layers.encoder_layer_0.", ("vit_",)),
    (".attn.relative_position_bias_table", ("swin_",)),
    (".layer_scale", ("convnext_",)),
    ("features.denseblock1.", ("densenet",)),
    ("trunk_output.block1.", ("regnet_",)),
    ("stage2.0.branch", ("shufflenet_",)),
    ("layers.0.weight", ("mnasnet",)),
    (".squeeze.weight", ("squeezenet",)),
    ("inception3a.", ("googlenet",)),
    ("Mixed_5b.", ("inception_v3",)),
    ("layer1.0.conv1.weight", ("resnet", "resnext", "wide_resnet")),
    (".block.0.0.weight", ("efficientnet_b", "efficientnet_v2", "mobilenet_v3")),
    (".conv.0.0.weight", ("mobilenet_v2",)),
    ("features.0.weight", ("vgg", "alexnet")),
)

# Per architecture: head slot, number and total size of trunk tensors (written by
# ``python -m mushcam.models.guess``; used only with the torchvision version it was made with).
SIGNATURES = Path(__file__).with_name("signatures.json")


@functools.lru_cache(maxsize=1)
def _signatures() -> dict[str, dict]:
    try:
        table = json.loads(SIGNATURES.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table["architectures"] if table.get("torchvision") == torchvision.__version__ else {}


def _plausible(state: Mapping[str, torch.Tensor], arch: str, prefixes: set[str]) -> bool:
    """Whether some prefix holds exactly as many trunk tensors, of the same total size, as ``arch``."""
    sig = _signatures().get(arch)
    if sig is None:
        return True
    for prefix in prefixes:
        slot = f"{prefix}{sig['slot']}."
        trunk = [v for k, v in state.items()
                 if k.startswith(prefix) and not k.startswith(slot) and not k.endswith("num_batches_tracked")]
        if len(trunk) == sig["trunk_keys"] and sum(v.numel() for v in trunk) == sig["trunk_numel"]:
            return True
    return False


@dataclass(frozen=True)
class Guess:
    """The best-fitting architecture: ``matched`` of its ``total`` trunk keys under ``prefix``."""

    arch: str
    prefix: str
    matched: int
    total: int

    @property
    def exact(self) -> bool:
        return self.matched == self.total


def _fit(state: Mapping[str, torch.Tensor], arch: str) -> Guess | None:
    try:
        sk = skeleton(arch)
    except (ArchitectureError, RuntimeError, NotImplementedError):
        return None
    trunk = [t for t in sk.trunk if not t.endswith("num_batches_tracked")]
    best: Guess | None = None
    prefixes = {""} | {k[: i + 1] for k in state for i, ch in enumerate(k) if ch == "."}
    anchor = trunk[0] if trunk else ""
    for prefix in prefixes:
        if prefix + anchor not in state and prefix:
            continue
        matched = sum(1 for t in trunk if tuple(getattr(state.get(prefix + t), "shape", ())) == sk.shapes[t])
        if best is None or matched > best.matched:
            best = Guess(arch, prefix, matched, len(trunk))
    return best


def guess_architecture(state: Mapping[str, torch.Tensor]) -> Guess | None:
    """The torchvision architecture whose trunk fits ``state`` best (names and shapes), if any."""
    keys = list(state)
    families: list[str] = []
    for marker, prefixes in _FAMILY_MARKERS:
        if any(marker in key for key in keys):
            families.extend(prefixes)
            break
    if not families:
        return None
    candidates = [a for a in torchvision_architectures() if a.startswith(tuple(families))]
    counts: dict[str, int] = {}
    for key in keys:
        for i, ch in enumerate(key):
            if ch == ".":
                counts[key[: i + 1]] = counts.get(key[: i + 1], 0) + 1
    prefixes = {""} | {p for p, n in counts.items() if n >= 0.3 * len(keys)}
    plausible = [a for a in candidates if _plausible(state, a, prefixes)]
    if not plausible:
        return Guess(f"{families[0].rstrip('_')}*", "", 0, 0)
    best: Guess | None = None
    for arch in plausible:
        found = _fit(state, arch)
        if found and (best is None or found.matched / max(found.total, 1) > best.matched / max(best.total, 1)):
            best = found
    return best if best and best.matched else None


def write_signatures(path: Path = SIGNATURES) -> int:
    """Rebuild the signature table (every torchvision classifier; about a minute)."""
    table: dict[str, dict] = {}
    for arch in torchvision_architectures():
        sk = skeleton(arch)
        trunk = [t for t in sk.trunk if not t.endswith("num_batches_tracked")]
        numel = sum(int(torch.Size(sk.shapes[t]).numel()) for t in trunk)
        table[arch] = {"slot": sk.slot, "trunk_keys": len(trunk), "trunk_numel": numel}
    document = {"torchvision": torchvision.__version__, "architectures": table}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return len(table)


if __name__ == "__main__":
    print(f"{write_signatures()} architectures written to {SIGNATURES}")


__all__ = ["Guess", "guess_architecture", "write_signatures"]
