"""Hostile conditions for the atomic writers (mushcam.files): a full disk, NaN in a JSON output.

Moved from the hostile-input catalogue (tests/unit/cli/test_hostile_inputs.py), which keeps the
interruptions that go through the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_full_disk_leaves_the_old_file_and_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import mushcam.files
    from mushcam.files import OutputError, write_bytes_atomic

    target = tmp_path / "grid.png"
    target.write_bytes(b"old")

    class FullDisk:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mushcam.files, "open", FullDisk, raising=False)
    with pytest.raises(OutputError, match=r"cannot write .*grid\.png: No space left on device"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"


def test_json_outputs_refuse_nan_and_name_the_field(tmp_path: Path) -> None:
    from mushcam.files import OutputError, write_json_atomic

    with pytest.raises(OutputError, match=r"top_k\[0\]\.probability"):
        write_json_atomic(tmp_path / "p.json", {"top_k": [{"probability": float("nan")}]})
    assert not (tmp_path / "p.json").exists()
