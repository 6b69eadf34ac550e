"""Issue 18 §2, "review and report": hostile notes, names and store rows through the CLI and the library.

Each case asserts the message, the exit status (2 for a refusal), that no traceback is shown,
that nothing is written outside ``--out`` and that the store is unchanged by a refusal.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import sqlite3
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli as run_in_process
from errors_setup import CONF, PRED, rows_for, run_record, write_errors_setup

from mushcam import store
from mushcam.compare.tables import to_csv as compare_csv
from mushcam.csvfile import csv_text, guard_cell, read_csv_file, read_csv_text
from mushcam.exceptions import MushcamError
from mushcam.render import to_png
from mushcam.review import causes, labels, report
from mushcam.review import store as rs
from mushcam.review.figures import FigureSource
from mushcam.text import MAX_NOTE, clean_name, clean_note, markdown_text

HOSTILE_NOTE = ("<script>alert(1)</script> [click](javascript:alert(1)) ![x](http://127.0.0.1:9/y.png) "
                "<img src=http://127.0.0.1:9/x.png> &amp;\n# Fake heading\n\n- **Ben**: fake review\n    code\n1. list")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_errors_setup(tmp_path_factory.mktemp("hostile_review"))


@pytest.fixture
def results(setup: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "results.sqlite"
    out.write_bytes(setup["out"].read_bytes())
    return out


def first_error(path: Path) -> tuple[store.RunRecord, store.Predictions, rs.ReviewKey]:
    contents = store.load_store(path)
    run = next(r for r in contents.runs if r.backbone == "efficientnet_b0")
    rows = contents.predictions[run.run_id]
    i = rows.image_paths.index("Amanita/img_1.png")
    return run, rows, rs.ReviewKey(rows.image_sha256[i], run.backbone, run.checkpoint_sha256)


def doubtful(path: Path, note: str, reviewer: str = "Ana") -> rs.Review:
    _, _, key = first_error(path)
    return rs.save_review(path, rs.Review(key, reviewer, ("label_doubtful",), note, "Boletus", "Amanita/img_1.png",
                                          "Amanita", "Boletus"))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The shared in-process runner, and no traceback on stderr."""
    code, out, err = run_in_process(argv, capsys)
    assert "Traceback" not in err
    return code, out, err


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- 1, 2: the CSV writer


@pytest.mark.parametrize("cell", ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", " =1+1", "\r=1+1", "\n=1", "'x",
                                  "\tplain", "\rplain", "  @x"])
def test_formula_guard_catches_what_a_spreadsheet_would_run(cell: str) -> None:
    assert guard_cell(cell) == "'" + cell
    assert read_csv_text(csv_text([[cell]])) == [[cell]]  # and it reads back exactly


@pytest.mark.parametrize("cell", ["plain", "-0.25", "1e-3", "+3", "a=b", "", "Amanita/img_1.png"])
def test_formula_guard_leaves_numbers_and_text_alone(cell: str) -> None:
    assert guard_cell(cell) == cell


def test_carriage_return_is_quoted_and_round_trips() -> None:
    rows = [["path", "note"], ["a.jpg", "ok\r=HYPERLINK(\"http://x\")"], ["b.jpg", "two\r\nlines\nhere"]]
    text = csv_text(rows)
    assert text.count("\r\n") == 3 + 1  # three row ends, one CR LF inside a quoted cell
    assert '"ok\r=HYPERLINK(""http://x"")"' in text  # quoted: a reader keeps it in one cell
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert len(parsed) == 3 and not any(row[0].startswith("=") for row in parsed)
    assert read_csv_text(text) == rows


def test_every_csv_writer_goes_through_the_guard() -> None:
    table = [{"model": "=HYPERLINK(\"http://x\")", "iou": -0.25, "note": "a\rb"}]
    text = compare_csv(table)
    assert text == 'model,iou,note\r\n"\'=HYPERLINK(""http://x"")",-0.25,"a\rb"\r\n'
    fixes = [labels.LabelFix("A/x.jpg", "Amanita", "Boletus", "\t=cmd|' /C calc'!A0", "@Ana")]
    assert labels.read_csv(labels.to_csv(fixes)) == fixes and "'\t=cmd" in labels.to_csv(fixes)


def test_export_labels_of_an_old_store_with_a_raw_cr_reads_back(results: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    doubtful(results, "placeholder")
    with sqlite3.connect(results) as connection:  # written before notes were cleaned on entry
        connection.execute("UPDATE reviews SET note = ?", ("ok\r=1+1\r@SUM(A1)",))
    target = tmp_path / "labels.csv"
    code, out, _ = run_cli(["export-labels", str(results), "--out", str(target)], capsys)
    assert code == 0 and "1 label to check written" in out
    rows = read_csv_file(target)
    assert len(rows) == 2 and rows[1][3] == "ok\n=1+1\n@SUM(A1)"  # one row, the note whole (line breaks as \n)
    assert labels.read_csv(target.read_bytes().decode()) == labels.label_fixes(rs.load_reviews(results))
    with target.open(newline="") as handle:
        assert all(not cell.startswith(("=", "+", "@")) for row in csv.reader(handle) for cell in row)


def test_export_labels_to_a_folder_is_one_error(results: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["export-labels", str(results), "--out", str(tmp_path)], capsys)
    assert code == 2 and err == f"error: --out {tmp_path} is a folder; give a file name\n"


# ----------------------------------------------------------------------------- 3: names in file names


def test_review_report_model_name_cannot_escape_out(results: Path, setup: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    record = dataclasses.replace(run_record("efficientnet_b0", setup["ckpt"], setup["data"], 12),
                                 backbone="../../../../escaped")
    store.save_run(results, record, rows_for(setup["data"], PRED, CONF))
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    monkeypatch.setattr(FigureSource, "figure", lambda self, run, rows, index: (
        to_png(np.full((20, 30, 3), index * 9, dtype=np.uint8)), ""))
    work = tmp_path / "deep" / "er" / "still"
    out = work / "report"
    before = files_under(tmp_path)
    code, printed, _ = run_cli(["review-report", str(results), "--out", str(out), "--data", str(setup["data"])],
                               capsys)
    assert code == 0 and "figures; wrote" in printed
    new = files_under(tmp_path) - before
    assert new and all(out in p.parents for p in new)  # nothing outside --out
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert any(name.startswith("_.._.._.._escaped") for name in pngs)  # the name made safe, with its hash
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.parent.glob("escaped*"))


def test_write_report_refuses_a_figure_name_that_leaves_out(tmp_path: Path) -> None:
    built = report.Report(figures={"../outside": to_png(np.zeros((4, 4, 3), dtype=np.uint8))})
    with pytest.raises(MushcamError, match="would land outside"):
        report.write_report(built, tmp_path / "out")
    assert not (tmp_path / "outside.png").exists() and not (tmp_path / "out" / "review_report.md").exists()


# ----------------------------------------------------------------------------- 4: damaged store rows


def test_text_as_a_near_duplicate_distance_is_a_named_warning(results: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, _, key = first_error(results)
    mark = rs.NearDuplicate(key.image_sha256, "test/Amanita/img_1.png", "test", "f" * 64, "train/A/y.png", "train", 5)
    rs.save_duplicates(results, [mark])
    with sqlite3.connect(results) as connection:
        connection.execute("UPDATE near_duplicates SET distance = 'close' WHERE split = 'train'")
    stamp = results.read_bytes()
    data = rs.read_review_data(results)
    assert [m.distance for marks in data.duplicates.values() for m in marks] == [5]  # the whole row is kept
    assert data.warnings == ("skipped 1 damaged near-duplicate mark in the store ('train/A/y.png' <-> "
                             "'test/Amanita/img_1.png': distance is 'close', not a whole number of bits from 0 "
                             "to 64); run check-data --store again to rewrite the marks",)
    code, _, err = run_cli(["review-report", str(results), "--out", str(tmp_path / "r"), "--no-figures"], capsys)
    assert code == 0 and err.splitlines() == [f"warning: {data.warnings[0]}"]
    assert "Near-duplicate of train/A/y.png (5 bits)" in (tmp_path / "r" / "review_report.md").read_text()
    assert results.read_bytes() == stamp  # reading changes nothing


def test_a_review_row_with_a_blob_note_is_skipped_with_a_warning(results: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    doubtful(results, "fine")
    doubtful(results, "also fine", reviewer="Ben")
    with sqlite3.connect(results) as connection:
        connection.execute("UPDATE reviews SET note = x'00ff' WHERE reviewer = 'Ben'")
    assert [r.reviewer for r in rs.load_reviews(results)] == ["Ana"]
    code, _, err = run_cli(["export-labels", str(results), "--out", str(tmp_path / "l.csv")], capsys)
    assert code == 0 and err == ("warning: skipped 1 damaged review in the store (the review of 'Amanita/img_1.png' "
                                 "by 'Ben': note is bytes, not text); save that review again on the Errors page\n")
    assert [row[4] for row in read_csv_file(tmp_path / "l.csv")] == ["reviewer", "Ana"]


# ----------------------------------------------------------------------------- 5: the Markdown report


def test_markdown_report_shows_notes_as_text(results: Path) -> None:
    doubtful(results, HOSTILE_NOTE)
    built = report.build_report(store.load_store(results), rs.index_reviews(rs.load_reviews(results)),
                                causes.DEFAULT_CAUSES)
    md, page = built.markdown(), built.html()
    for raw in ("<script", "<img", "![x](", "[click]("):
        assert raw not in md, raw
    assert not re.search(r"(?<!\\)\]\(", md)  # no unescaped '](': no link or image starts
    assert "&amp;amp;" in md  # an entity in a note is shown as typed, not decoded
    ours = {"# Error analysis", *(f"## {b.text}" for b in built.blocks if b.kind == "h2"),
            *(f"### {b.text}" for b in built.blocks if b.kind == "h3")}
    headings = [line for line in md.splitlines() if line.lstrip().startswith("#")]
    assert all(line.split(" · ")[0] in {h.split(" · ")[0] for h in ours} for line in headings), headings
    assert not any(line.startswith(("- **Ben**", "    ", "1. ")) for line in md.splitlines())
    assert "&lt;script&gt;alert\\(1\\)" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "!\\[x\\](http://127.0.0.1:9/y.png)" in md and "\\# Fake heading" in md
    assert "<script" not in page and "&lt;script&gt;" in page and "<img src=http" not in page


def test_markdown_text_neutralises_every_block_start() -> None:
    assert markdown_text("# h\n> q\n- l\n+ l\n1. o\n2) o\n===\n    code\n\n\nend") == (
        "\\# h  \n&gt; q  \n\\- l  \n\\+ l  \n1\\. o  \n2\\) o  \n\\===  \ncode  \nend")
    assert markdown_text("img_1.png a *b* `c` | $x$ ~~s~~ [l](u)") == (
        "img_1.png a \\*b\\* \\`c\\` \\| \\$x\\$ \\~\\~s\\~\\~ \\[l\\](u)")


# ----------------------------------------------------------------------------- 7: the text sanitiser


@pytest.mark.parametrize(("name", "char"), [("Ana\u202egnp.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
                                            ("An\u200ba", "U+200B ZERO WIDTH SPACE"),
                                            ("Ana\x07", "U+0007 CONTROL CHARACTER"),
                                            ("\u2066Ana", "U+2066 LEFT-TO-RIGHT ISOLATE"),
                                            ("Ana\x9b", "U+009B CONTROL CHARACTER")])
def test_names_with_hidden_characters_are_refused(results: Path, name: str, char: str) -> None:
    _, _, key = first_error(results)
    stamp = results.read_bytes()
    refusal = f"cannot hold invisible or control characters: {char}"
    with pytest.raises(MushcamError, match=re.escape(f"a reviewer name {refusal}")):
        rs.save_review(results, rs.Review(key, name, ("other",)))
    with pytest.raises(MushcamError, match=re.escape(f"a cause name {refusal}")):
        rs.add_cause(results, name)
    assert results.read_bytes() == stamp


def test_names_and_notes_are_normalised() -> None:
    assert clean_name("  Jose\u0301   Ana\t", "a reviewer name", 60) == "José Ana"  # NFC, spaces collapsed
    assert clean_note(" a\r\nb\rc\u2028d\u202e\u200be\x00\tf\u200dg ") == "a\nb\nc\nde\tf\u200dg"


# ----------------------------------------------------------------------------- 8: long notes


def test_a_note_over_the_limit_is_refused_and_the_store_unchanged(results: Path) -> None:
    _, _, key = first_error(results)
    stamp = results.read_bytes()
    with pytest.raises(MushcamError, match="a note has at most 5,000 characters; this one has 5,001: shorten it"):
        rs.save_review(results, rs.Review(key, "Ana", ("other",), "x" * (MAX_NOTE + 1)))
    assert results.read_bytes() == stamp
    assert rs.save_review(results, rs.Review(key, "Ana", ("other",), "x" * MAX_NOTE)).note == "x" * MAX_NOTE


def test_an_old_10_mb_note_is_read_truncated_and_bounded(results: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    doubtful(results, "short")
    with sqlite3.connect(results) as connection:
        connection.execute("UPDATE reviews SET note = ?", ("y" * 10_000_000,))
    tracemalloc.start()
    try:
        (loaded,) = rs.load_reviews(results)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # the 10 MB note never reaches Python
    assert len(loaded.note) == MAX_NOTE and loaded.note.endswith("… (truncated, 10,000,000 characters)")
    code, _, _ = run_cli(["review-report", str(results), "--out", str(tmp_path / "r"), "--no-figures",
                          "--labels-csv", str(tmp_path / "l.csv")], capsys)
    assert code == 0
    assert (tmp_path / "r" / "review_report.md").stat().st_size < 100_000  # was 46 MB for the two reports
    assert (tmp_path / "r" / "review_report.html").stat().st_size < 100_000
    assert read_csv_file(tmp_path / "l.csv")[1][3] == loaded.note  # under the csv module's cell limit


def test_a_csv_cell_over_the_reader_limit_is_one_message(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("path,current_label,suggested_label,note,reviewer\r\na,b,c," + "z" * 200_000 + ",d\r\n")
    with pytest.raises(MushcamError, match="cannot be read as CSV: field larger than field limit"):
        read_csv_file(big)
    assert csv.field_size_limit() == 131072  # the process-wide limit is left as it was


# ----------------------------------------------------------------------------- 9: cause names


def test_causes_in_any_script_are_accepted(results: Path) -> None:
    assert rs.add_cause(results, "Гниль").key == "гниль"
    assert rs.add_cause(results, "カビ 2").key == "カビ_2"
    assert rs.add_cause(results, "Über-reif").key == "uber_reif"  # Latin letters: the ASCII key, as before
    assert {c.label for c in rs.load_custom_causes(results)} == {"Гниль", "カビ 2", "Über-reif"}
    with pytest.raises(MushcamError, match="a cause needs letters or digits; got '/ - /'"):
        causes.new_cause("/ - /")


@pytest.mark.parametrize(("first", "second", "named"), [
    ("Mould", "mould ", "Mould"), ("Mould", "ｍｏｕｌｄ", "Mould"), ("Mould / rot", "mould rot", "Mould / rot"),
    (None, "Shortcut", "shortcut (watermark, text, ruler, hand)"), (None, "OTHER", "other")])
def test_a_cause_that_collides_is_refused_naming_the_existing_one(results: Path, first: str | None, second: str,
                                                                 named: str) -> None:
    if first:
        rs.add_cause(results, first)
        assert rs.add_cause(results, first).label == first  # the same label again: harmless, no second row
    stamp = rs.load_custom_causes(results)
    with pytest.raises(MushcamError, match=re.escape(f"would be the same as the existing “{named}”")):
        rs.add_cause(results, second)
    assert rs.load_custom_causes(results) == stamp
