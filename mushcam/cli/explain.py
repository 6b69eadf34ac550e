"""``python -m mushcam explain IMAGE --model NAME --out DIR``: one image's map and its four views."""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

from mushcam.cli.common import positive_int, resolve_manifest
from mushcam.exceptions import UsageError
from mushcam.settings import add_trust_code_option


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``explain``."""
    add_explain(subparsers)


def add_explain(subparsers: argparse._SubParsersAction) -> None:
    """The ``explain`` sub-command and its options."""
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
    parser.add_argument("--layer", help="target layer as a dotted path (default: the manifest's, else found "
                                        "automatically)")
    parser.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    parser.add_argument("--versus", metavar="CLASS",
                        help="a second class (name or index): the map then shows what pushed the explained class "
                        "above this one (the map of y_A - y_B; gradient methods only)")
    from mushcam.cam import DEFAULT_METHOD, method_help  # the registry's names, read when the parser is built

    # checked by check_method in run_explain
    parser.add_argument("--method", default=DEFAULT_METHOD, help=method_help())
    parser.add_argument("--alpha", type=float, default=None, help="heat map opacity 0..1 (default 0.45)")
    parser.add_argument("--colormap", default=None, help="jet, viridis, hot, inferno, magma, plasma, turbo, gray")
    parser.add_argument("--top-k", type=positive_int, default=5, help="classes listed in prediction.json (at least 1)")
    parser.add_argument("--out", required=True, help="output folder (created)")
    add_trust_code_option(parser)
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    """``explain``: check the options, compute the map, write the views, cam.npy and prediction.json."""
    from mushcam.catalog import cam_layer, load_catalog_entry, with_code_consent
    from mushcam.data import load_image
    from mushcam.explain import explain_image
    from mushcam.finite import naming_model

    alpha, colormap = check_explain_options(args)
    manifest = with_code_consent(with_checkpoint(resolve_manifest(args.manifest), args.model, args.checkpoint),
                                 trust_code=args.trust_code)
    image = load_image(args.image)
    loaded = load_catalog_entry(manifest, args.model)
    layer = args.layer or cam_layer(manifest, args.model, loaded)
    class_idx = parse_target(args.target, manifest)
    versus = parse_target(args.versus, manifest, "--versus")
    with naming_model(args.model):
        explanation = explain_image(loaded.model, image, manifest.input, layer, class_idx, args.method,
                                    versus=versus)
    write_explanation(args, manifest, loaded, layer, image, explanation, alpha, colormap)
    return 0


def check_explain_options(args: argparse.Namespace) -> tuple[float, str]:
    """The method, ``--alpha``, ``--colormap`` and ``--out`` checked before any model is loaded."""
    from mushcam.cam import check_method
    from mushcam.render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP

    check_method(args.method)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1; got {alpha}")
    colormap = args.colormap or DEFAULT_COLORMAP
    if colormap not in COLORMAPS:
        raise UsageError(f"--colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder (it is created)")
    return alpha, colormap


def write_explanation(args, manifest, loaded, layer: str, image, explanation, alpha: float,  # noqa: ANN001
                      colormap: str) -> None:
    """The four view PNGs, ``cam.npy`` and ``prediction.json`` in ``--out``, and the closing lines."""
    import numpy as np

    from mushcam.explain import render_explanation
    from mushcam.files import write_bytes_atomic, write_json_atomic
    from mushcam.render import MAX_VIEW_SIDE, to_png

    views = render_explanation(image, explanation, manifest, manifest.display_name(args.model), alpha, colormap)
    out = Path(args.out)
    for name, pixels in views.as_dict().items():
        write_bytes_atomic(out / f"{name.lower()}.png", to_png(pixels))
    buffer = io.BytesIO()
    np.save(buffer, explanation.cam.numpy(), allow_pickle=False)
    write_bytes_atomic(out / "cam.npy", buffer.getvalue())
    prediction = prediction_record(args, manifest, loaded, layer, explanation)
    if views.scaled_from is not None:
        prediction["views_scaled_from"] = list(views.scaled_from)
        prediction["views_size"] = [int(views.original.shape[1]), int(views.original.shape[0])]
    write_json_atomic(out / "prediction.json", prediction, "prediction.json")
    names = manifest.class_names
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


def prediction_record(args, manifest, loaded, layer: str, explanation) -> dict:  # noqa: ANN001
    """The fields of ``prediction.json`` (``backbone`` is the old name of ``arch``)."""
    from mushcam.data import printable
    from mushcam.explain import top_k

    names = manifest.class_names
    return {
        "image": printable(Path(args.image).resolve()),
        "model": args.model,
        "arch": loaded.arch,
        "backbone": loaded.arch,  # the field's old name: the architecture
        "checkpoint": printable(manifest.checkpoint_path(args.model).resolve()),
        "layer": layer,
        "method": args.method,
        "predicted": names[explanation.predicted_idx],
        "confidence": explanation.confidence,
        "explained_class": names[explanation.class_idx],
        "explained_class_toxicity": manifest.toxicity(explanation.class_idx),
        **({"versus": names[explanation.versus]} if explanation.versus is not None else {}),
        "top_k": [
            {"class": name, "probability": p, "toxicity": manifest.toxicity(name)}
            for name, p in top_k(explanation.probabilities, names, args.top_k)
        ],
        "cam_shape": list(explanation.cam.shape),
        "cam_max": float(explanation.cam.max()),
    }


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


def parse_target(text: str | None, manifest, option: str = "--target") -> int | None:  # noqa: ANN001 - a Manifest
    """``--target`` (or ``option``): a class index (ASCII digits) or a class name; None when not given."""
    if text is None:
        return None
    if re.fullmatch(r"[0-9]+", text.strip()):
        index = int(text)
        if not 0 <= index < manifest.num_classes:
            raise UsageError(f"{option} {index} is out of range: there are {manifest.num_classes} classes "
                             f"(0..{manifest.num_classes - 1})")
        return index
    try:
        return manifest.class_index(text)
    except KeyError as exc:
        reason = exc.args[0] if exc.args else text
        raise UsageError(f"{option} {text!r}: {reason}") from None
