"""The CLI's one error line never passes a name's control characters to the terminal (issue 18:
escape sequences in file names reached the terminal raw; check-data was fixed, every command now is)."""

from __future__ import annotations

from pathlib import Path

from mushcam.cli import main


def test_a_store_path_with_escape_sequences_is_named_with_them_escaped(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "\x1b[31mred\rrewritten\u202e.sqlite"
    status = main(["report", str(missing)])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err
    assert "\\x1b[31mred\\rrewritten\\u202e.sqlite" in err
    assert err.count("\n") == 1  # one line
