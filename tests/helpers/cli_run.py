"""``python -m mushcam argv`` in the test's own process, for the hostile-input catalogues."""

from __future__ import annotations

import pytest

from mushcam.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)``'s exit status (argparse's own refusals, a SystemExit, included), stdout and stderr."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err
