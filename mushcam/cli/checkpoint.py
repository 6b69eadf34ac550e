"""``python -m mushcam import-checkpoint FILE --out DIR``: a whole pickled model into weights + an entry."""

from __future__ import annotations

import argparse


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``import-checkpoint``."""
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
    """Convert the file, then print where the weights went and the manifest entry to add."""
    import json

    from mushcam.models.importing import import_checkpoint

    result = import_checkpoint(args.file, args.out, args.trust, args.code, args.name, args.arch, args.size)
    print(f"wrote {result.weights} and {result.entry_file}: {result.verified}")
    print(f"add to manifest.json's \"models\": \"{result.name}\": {json.dumps(result.entry)}")
    return 0
