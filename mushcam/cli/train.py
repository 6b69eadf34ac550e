"""``python -m mushcam train``: its options, the torch thread count, and the closing line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from mushcam.exceptions import MushcamError
from mushcam.manifest import load_manifest
from mushcam.models import BACKBONES
from mushcam.train.config import TrainConfig
from mushcam.train.loop import train


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``python -m mushcam train``."""
    parser = subparsers.add_parser(
        "train",
        help="train backbones on ROOT/train, select on ROOT/val; write checkpoints + manifest.json into --out",
        description=(
            "Train classifiers whose checkpoints the app explains as they are. ROOT holds train/<Class>/ "
            "and val/<Class>/ (and optionally test/<Class>/, scored at the end). Poisonous classes count "
            "--poisonous-weight times in the loss (the thesis: 4)."
        ),
    )
    parser.add_argument("--data", required=True, metavar="ROOT", help="folder with train/<Class>/ and val/<Class>/")
    parser.add_argument("--backbone", required=True, choices=[*BACKBONES, "all"])
    parser.add_argument("--manifest", metavar="FILE", help="manifest (or its folder) giving each class's toxicity")
    parser.add_argument("--epochs", type=int, default=30, metavar="N", help="at most N epochs (default 30)")
    parser.add_argument("--image-size", type=int, default=224, metavar="S", help="network input side in pixels "
                                                                                 "(default 224)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="default 32")
    parser.add_argument("--poisonous-weight", type=float, default=4.0, metavar="W", help="loss weight factor of "
                                                                                         "poisonous classes (default "
                                                                                         "4)")
    parser.add_argument("--inverse-frequency", action="store_true", help="also weight each class by N / (C * n_c)")
    parser.add_argument("--pretrained", action="store_true", help="start from torchvision's ImageNet weights")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="same seed, same data, same machine: same "
                                                                         "weights")
    parser.add_argument("--lr", type=float, default=None, metavar="LR", help="peak learning rate (default 1e-3; 3e-4 "
                                                                             "with --pretrained)")
    parser.add_argument("--weight-decay", type=float, default=0.05, metavar="WD", help="AdamW weight decay (default "
                                                                                       "0.05)")
    parser.add_argument("--patience", type=int, default=5, metavar="N", help="stop after this many epochs without a "
                                                                             "better val loss")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: the "
                                                                               "CPUs available; 1 is faster on a busy "
                                                                               "shared host)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created); its manifest.json is "
                                                                    "merged")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` command; a user error raises :class:`MushcamError` (the CLI prints one line, exit 2)."""
    threads = args.threads if args.threads is not None else len(os.sched_getaffinity(0))
    if threads < 1:
        raise MushcamError(f"--threads must be at least 1; got {threads}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_train(args)
    finally:
        torch.set_num_threads(previous_threads)  # a caller in the same process keeps its setting


def _run_train(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.manifest) if args.manifest else None
    config = TrainConfig(
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        poisonous_weight=args.poisonous_weight,
        inverse_frequency=args.inverse_frequency,
        pretrained=args.pretrained,
        device=args.device,
        seed=args.seed,
        lr=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
    )
    backbones = list(BACKBONES) if args.backbone == "all" else [args.backbone]
    started = time.perf_counter()
    results = train(
        args.data, backbones, args.out, config, manifest,
        report=lambda line: print(line, flush=True),
        warn=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min; the app explains them with "
          f"MUSHCAM_CHECKPOINTS={Path(args.out).resolve()}", flush=True)
    return 0 if results else 1
