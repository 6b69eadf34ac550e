"""Command line: ``python -m mushcam <command> ...``.

``explain`` lives here; the other commands (compare, evaluate, report, train, gradcam) are
registered by their own modules through an ``add_cli(subparsers)`` function. A user error
(bad image, bad checkpoint, bad manifest...) prints one line and exits with status 2; set
``MUSHCAM_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

from mushcam.exceptions import MushcamError

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Modules that contribute sub-commands through ``add_cli(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "mushcam.compare",
    "mushcam.evaluate",
    "mushcam.train",
    "mushcam.pipeline",
)


class UsageError(MushcamError):
    """A command-line argument is wrong (the message says which)."""


def resolve_manifest(manifest_arg: str | None):  # noqa: ANN201 - returns mushcam.manifest.Manifest
    """The manifest named on the command line, or the default checkpoint folder's one."""
    from mushcam.manifest import load_manifest, default_checkpoint_dir

    return load_manifest(manifest_arg if manifest_arg else default_checkpoint_dir())


def add_explain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="Grad-CAM of one image: original/heatmap/overlay/combined PNGs, cam.npy, prediction.json",
    )
    parser.add_argument("image", help="image file (jpg, png, webp, bmp, tiff)")
    parser.add_argument("--model", "--backbone", dest="model", required=True, metavar="NAME",
                        help="the model's name in the manifest (e.g. resnet50, or a name of your own); with "
                        "--checkpoint, a name not in the manifest is read as an architecture; --backbone is the "
                        "old spelling")
    parser.add_argument("--checkpoint", help="weights file (default: the manifest's entry for the model)")
    parser.add_argument("--manifest", help="manifest.json or its folder (default: checkpoints/)")
    parser.add_argument("--layer", help="target layer as a dotted path (default: the manifest's, else found automatically)")
    parser.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    parser.add_argument("--alpha", type=float, default=None, help="heat map opacity 0..1 (default 0.45)")
    parser.add_argument("--colormap", default=None, help="jet, viridis, hot, inferno, magma, plasma, turbo, gray")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed in prediction.json")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from mushcam.catalog import cam_layer, load_catalog_entry
    from mushcam.data import load_image
    from mushcam.explain import explain_image, render_explanation, top_k
    from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, to_png

    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {alpha}")
    colormap = args.colormap or DEFAULT_COLORMAP
    if colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
    manifest = with_checkpoint(resolve_manifest(args.manifest), args.model, args.checkpoint)
    checkpoint = manifest.checkpoint_path(args.model)
    image = load_image(args.image)
    loaded = load_catalog_entry(manifest, args.model)
    model = loaded.model
    layer = args.layer or cam_layer(manifest, args.model, loaded)
    class_idx = None
    if args.target is not None:
        class_idx = int(args.target) if args.target.isdigit() else manifest.class_index(args.target)
        if not 0 <= class_idx < manifest.num_classes:
            raise UsageError(f"--target {class_idx} is out of range: there are {manifest.num_classes} classes")
    explanation = explain_image(model, image, manifest.input, layer, class_idx)
    views = render_explanation(image, explanation, manifest, manifest.display_name(args.model), alpha, colormap)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, pixels in views.as_dict().items():
        (out / f"{name.lower()}.png").write_bytes(to_png(pixels))
    np.save(out / "cam.npy", explanation.cam.numpy())
    names = manifest.class_names
    prediction = {
        "image": str(Path(args.image).resolve()),
        "model": args.model,
        "arch": loaded.arch,
        "backbone": loaded.arch,  # the field's old name: the architecture
        "checkpoint": str(checkpoint.resolve()),
        "layer": layer,
        "predicted": names[explanation.predicted_idx],
        "confidence": explanation.confidence,
        "explained_class": names[explanation.class_idx],
        "explained_class_toxicity": manifest.toxicity(explanation.class_idx),
        "top_k": [
            {"class": name, "probability": p, "toxicity": manifest.toxicity(name)}
            for name, p in top_k(explanation.probabilities, names, args.top_k)
        ],
        "cam_shape": list(explanation.cam.shape),
        "cam_max": float(explanation.cam.max()),
    }
    (out / "prediction.json").write_text(json.dumps(prediction, indent=2) + "\n", encoding="utf-8")
    print(
        f"{names[explanation.predicted_idx]} ({explanation.confidence:.1%}); "
        f"map for {names[explanation.class_idx]} written to {out}"
    )
    return 0


def with_checkpoint(manifest, name: str, checkpoint: str | None):  # noqa: ANN001, ANN201 - Manifest in, Manifest out
    """The manifest, with ``--checkpoint`` overriding model ``name``'s file; a name the manifest
    does not list becomes an entry of that architecture (``--model resnet18 --checkpoint f.pt``)."""
    from dataclasses import replace

    from mushcam.manifest import ModelEntry
    from mushcam.models import DEFAULT_LAYERS

    entry = manifest.models.get(name)
    if checkpoint is None:
        if entry is None:
            raise UsageError(
                f"the manifest lists no model named {name!r} (its models: {', '.join(manifest.models) or 'none'}); "
                "give one of those names, or pass --checkpoint FILE with an architecture name"
            )
        return manifest
    path = str(Path(checkpoint).expanduser().resolve())
    entry = replace(entry, checkpoint=path) if entry else ModelEntry(name, path, DEFAULT_LAYERS.get(name))
    return replace(manifest, models={**manifest.models, name: entry})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mushcam", description="MushCAM: Grad-CAM for mushroom classifiers")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_explain(subparsers)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that command is not built yet
            raise
        module.add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        if os.environ.get("MUSHCAM_DEBUG"):
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
