"""Does faithfulness scoring hold memory per image? Score the same photos R times, print RSS.

    python benchmarks/trust_memory_repeat.py --manifest runs/mushrooms --model mobilenet_v3_large \
        --data ../shared/data/mushrooms/test [--images 8] [--rounds 12] [--threads 2]

Each round explains the photos (Grad-CAM) and scores every map with ``evaluate_map`` at the
default settings, exactly as ``python -m mushcam faithfulness`` does per batch. A resident
size that stays put from round to round means nothing accumulates per scored image; one
that climbs by a constant step per round would be a leak.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from mushcam.cam import cam as explain_maps  # noqa: E402
from mushcam.catalog import load_catalog_entry  # noqa: E402
from mushcam.data import decode_image, preprocess, read_bytes  # noqa: E402
from mushcam.evaluate import scan_test_set  # noqa: E402
from mushcam.manifest import load_manifest  # noqa: E402
from mushcam.memory import current_rss_bytes  # noqa: E402
from mushcam.trust.faithfulness import FaithfulnessSettings, evaluate_map  # noqa: E402
from mushcam.trust.run import image_generator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.manifest)
    loaded = load_catalog_entry(manifest, args.model)
    images = list(scan_test_set(args.data, manifest).images)[: args.images]
    batch = torch.stack([preprocess(decode_image(read_bytes(item.path)), manifest.input) for item in images])
    settings = FaithfulnessSettings()
    for round_index in range(args.rounds):
        result = explain_maps(loaded.model, batch, loaded.layer, None, "gradcam")
        for i in range(len(images)):
            evaluate_map(loaded.model, batch[i], result.cams[i], int(result.class_idx[i]), settings,
                         image_generator(settings.seed, str(i)))
        print(f"round {round_index + 1}: resident {current_rss_bytes() / 2**20:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
