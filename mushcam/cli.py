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
import io
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

# Modules that contribute sub-commands through ``add_cli(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "mushcam.compare.cli",
    "mushcam.evaluate.cli",
    "mushcam.train.cli",
    "mushcam.pipeline.cli",
    "mushcam.review.cli",
    "mushcam.trust.cli",
)


class UsageError(MushcamError):
    """A command-line argument is wrong (the message says which)."""


def resolve_manifest(manifest_arg: str | None):  # noqa: ANN201 - returns mushcam.manifest.Manifest
    """The manifest named on the command line, or the default checkpoint folder's one.

    A manifest that Python's json cannot even hold (nesting deep enough for RecursionError,
    an integer of more than 4,300 digits) is a user error here too, not a traceback.
    """
    from mushcam.manifest import ManifestError, default_checkpoint_dir, load_manifest

    where = manifest_arg if manifest_arg else default_checkpoint_dir()
    try:
        return load_manifest(where)
    except MushcamError:
        raise
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            reason = "it is nested too deeply to be a manifest"
        elif "digits" in str(exc):
            reason = "it holds a number with more than 4,300 digits"
        else:
            reason = str(exc)
        raise ManifestError(f"the manifest in {where} cannot be read: {reason}") from None


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
    from mushcam.cam.registry import method_help  # the registry's names, read when the parser is built

    parser.add_argument("--method", default="gradcam", help=method_help())  # checked by check_method in run_explain
    parser.add_argument("--alpha", type=float, default=None, help="heat map opacity 0..1 (default 0.45)")
    parser.add_argument("--colormap", default=None, help="jet, viridis, hot, inferno, magma, plasma, turbo, gray")
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes listed in prediction.json (at least 1)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from mushcam.catalog import cam_layer, load_catalog_entry
    from mushcam.data import load_image, printable
    from mushcam.explain import explain_image, render_explanation, top_k
    from mushcam.files import write_bytes_atomic, write_json_atomic
    from mushcam.finite import naming_model
    from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, MAX_VIEW_SIDE, to_png

    from mushcam.methods import check_method

    check_method(args.method)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {alpha}")
    colormap = args.colormap or DEFAULT_COLORMAP
    if colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    manifest = with_checkpoint(resolve_manifest(args.manifest), args.model, args.checkpoint)
    checkpoint = manifest.checkpoint_path(args.model)
    image = load_image(args.image)
    loaded = load_catalog_entry(manifest, args.model)
    model = loaded.model
    layer = args.layer or cam_layer(manifest, args.model, loaded)
    class_idx = parse_target(args.target, manifest)
    with naming_model(args.model):
        explanation = explain_image(model, image, manifest.input, layer, class_idx, args.method)
    views = render_explanation(image, explanation, manifest, manifest.display_name(args.model), alpha, colormap)

    out = Path(args.out)
    for name, pixels in views.as_dict().items():
        write_bytes_atomic(out / f"{name.lower()}.png", to_png(pixels))
    buffer = io.BytesIO()
    np.save(buffer, explanation.cam.numpy(), allow_pickle=False)
    write_bytes_atomic(out / "cam.npy", buffer.getvalue())
    names = manifest.class_names
    prediction = {
        "image": printable(Path(args.image).resolve()),
        "model": args.model,
        "arch": loaded.arch,
        "backbone": loaded.arch,  # the field's old name: the architecture
        "checkpoint": printable(checkpoint.resolve()),
        "layer": layer,
        "method": args.method,
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
    if views.scaled_from is not None:
        prediction["views_scaled_from"] = list(views.scaled_from)
        prediction["views_size"] = [int(views.original.shape[1]), int(views.original.shape[0])]
    write_json_atomic(out / "prediction.json", prediction, "prediction.json")
    print(
        f"{names[explanation.predicted_idx]} ({explanation.confidence:.1%}); "
        f"map for {names[explanation.class_idx]} written to {out}"
    )
    if views.scaled_from is not None:
        width, height = views.scaled_from
        print(
            f"note: the image is {width}x{height}; the views were drawn at "
            f"{views.original.shape[1]}x{views.original.shape[0]} (at most {MAX_VIEW_SIDE} px on the long side: "
            "views are for people; the model saw its own input size either way)",
            file=sys.stderr,
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


def add_import_checkpoint(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-checkpoint",
        help="convert a whole pickled model (torch.save(model)) into a weights-only checkpoint + manifest entry",
    )
    parser.add_argument("file", help="the pickled model file")
    parser.add_argument("--trust", action="store_true", help="unpickle it: this runs code named in the file")
    parser.add_argument("--code", help="folder holding the .py file that defines the model's class")
    parser.add_argument("--out", required=True, help="output folder for NAME.pt and NAME.entry.json")
    parser.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    parser.add_argument("--arch", help="architecture to try first (default: recognised from the weights)")
    parser.add_argument("--size", type=int, default=224, help="input size used to check the logits (default 224)")
    parser.set_defaults(handler=run_import_checkpoint)


def run_import_checkpoint(args: argparse.Namespace) -> int:
    import json

    from mushcam.models.importing import import_checkpoint

    result = import_checkpoint(args.file, args.out, args.trust, args.code, args.name, args.arch, args.size)
    print(f"wrote {result.weights} and {result.entry_file}: {result.verified}")
    print(f"add to manifest.json's \"models\": \"{result.name}\": {json.dumps(result.entry)}")
    return 0



def parse_target(text: str | None, manifest) -> int | None:  # noqa: ANN001 - mushcam.manifest.Manifest
    """``--target``: a class index (ASCII digits) or a class name; None for the predicted class."""
    if text is None:
        return None
    if re.fullmatch(r"[0-9]+", text.strip()):
        index = int(text)
        if not 0 <= index < manifest.num_classes:
            raise UsageError(f"--target {index} is out of range: there are {manifest.num_classes} classes (0..{manifest.num_classes - 1})")
        return index
    try:
        return manifest.class_index(text)
    except KeyError as exc:
        reason = exc.args[0] if exc.args else text
        raise UsageError(f"--target {text!r}: {reason}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (argparse names the option in its message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mushcam", description="MushCAM: Grad-CAM for mushroom classifiers")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_explain(subparsers)
    add_import_checkpoint(subparsers)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_cli(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MushcamError, OSError) as exc:
        # The library's own errors (raised where json, torch.load, sqlite3, PIL or os failed)
        # and OS errors at the edge (a full disk, a permission): one line, no traceback.
        if os.environ.get("MUSHCAM_DEBUG"):
            raise
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 2


def describe_error(exc: BaseException) -> str:
    """One line for the user: the message, with an OS error's file name shown readably."""
    if isinstance(exc, OSError) and not isinstance(exc, MushcamError) and exc.strerror:
        where = f": {os.fsencode(exc.filename).decode('utf-8', 'backslashreplace')}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)
