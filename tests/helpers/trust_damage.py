"""Ways a results store's trust tables get damaged (issue 18 §2), shared by the CLI and page tests.

Each entry: name -> (SQL run on a copy of a scored store, a regular expression its one message matches).
The store holds one faithfulness run and one sanity run of mobilenet_v3_large (``trust_setup``).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

FIRST_IMAGE = "(SELECT MIN(image_path) FROM faithfulness_images)"
FIRST_SANITY_IMAGE = "(SELECT MIN(image_path) FROM sanity_images)"
FAITHFULNESS_FIX = (r"faithfulness run \d+ \(model mobilenet_v3_large\)"
                    r".*re-run faithfulness for model mobilenet_v3_large")
SANITY_FIX = r"sanity run \d+ \(model mobilenet_v3_large\).*re-run sanity for model mobilenet_v3_large"

DAMAGE: dict[str, tuple[str, str]] = {
    "settings-not-json": ("UPDATE faithfulness_runs SET settings_json = 'not json {'",
                          FAITHFULNESS_FIX.replace(r"\).*", r"\): the settings_json column is not valid JSON.*")),
    "settings-without-steps": ("UPDATE faithfulness_runs SET settings_json = '{\"baseline\": \"blur\"}'",
                               r"settings_json has no whole number of steps.*re-run faithfulness"),
    "blocks-not-json": ("UPDATE sanity_runs SET blocks_json = '[\"fc\",'",
                        SANITY_FIX.replace(r"\).*", r"\): the blocks_json column is not valid JSON.*")),
    "short-curves-blob": ("UPDATE faithfulness_images SET curves = substr(curves, 1, 8) "
                          f"WHERE image_path = {FIRST_IMAGE}",
                          r"image .*img_0\.png: the curves blob holds 8 bytes; expected \d+.*re-run faithfulness"),
    "uneven-curves-blob": ("UPDATE faithfulness_images SET curves = CAST(curves || x'00' AS BLOB) "
                           f"WHERE image_path = {FIRST_IMAGE}",
                           r"the curves blob holds \d+ bytes; expected \d+ \(\d+ float32 values\).*re-run "
                           r"faithfulness"),
    "short-spearman-blob": ("UPDATE sanity_images SET spearman = substr(spearman, 1, 4) "
                            f"WHERE image_path = {FIRST_SANITY_IMAGE}",
                            r"the spearman blob holds 4 bytes; expected \d+.*re-run sanity for model"),
    "uneven-ssim-blob": ("UPDATE sanity_images SET ssim = CAST(ssim || x'0000' AS BLOB) "
                         f"WHERE image_path = {FIRST_SANITY_IMAGE}",
                         r"the ssim blob holds \d+ bytes.*re-run sanity for model"),
    "text-in-a-score": (f"UPDATE faithfulness_images SET deletion_auc = 'abc' WHERE image_path = {FIRST_IMAGE}",
                        r"the deletion_auc column holds the text 'abc', not a number.*re-run faithfulness"),
    "text-in-a-class-index": (f"UPDATE faithfulness_images SET true_idx = 'two' WHERE image_path = {FIRST_IMAGE}",
                              r"the true_idx column holds the text 'two', not a whole number.*re-run faithfulness"),
}


def damaged_copy(store: Path, folder: Path, damage: str) -> Path:
    """A copy of ``store`` in ``folder`` with one kind of damage done to it."""
    copy = folder / "damaged.sqlite"
    shutil.copyfile(store, copy)
    connection = sqlite3.connect(copy)
    try:
        with connection:
            changed = connection.execute(DAMAGE[damage][0]).rowcount
    finally:
        connection.close()
    assert changed >= 1, damage
    return copy
