"""Error review: storing reviews, several reviewers, kappa, the report, labels CSV, the CLI."""

from __future__ import annotations

import math
import multiprocessing
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from errors_setup import CONF, PATHS, PRED, rows_for, run_record, write_errors_setup

import mushcam
from mushcam import cli, store
from mushcam.exceptions import MushcamError
from mushcam.render import to_png
from mushcam.review import agreement, causes, labels, report
from mushcam.review import store as rs
from mushcam.review.agreement import cohen_kappa, pairwise_kappa
from mushcam.review.paths import OutsideDataFolder, dataset_file


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_errors_setup(tmp_path_factory.mktemp("review"))


@pytest.fixture
def results(setup: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the two-run store (each test writes its own reviews)."""
    out = tmp_path / "results.sqlite"
    out.write_bytes(setup["out"].read_bytes())
    return out


def run_of(path: Path, backbone: str) -> tuple[store.RunRecord, store.Predictions]:
    contents = store.load_store(path)
    run = next(r for r in contents.runs if r.backbone == backbone)
    return run, contents.predictions[run.run_id]


def key_for(run: store.RunRecord, rows: store.Predictions, path: str) -> rs.ReviewKey:
    return rs.ReviewKey(rows.image_sha256[rows.image_paths.index(path)], run.backbone, run.checkpoint_sha256)


def review(key: rs.ReviewKey, reviewer: str, *tags: str, note: str = "", suggested: str = "",
           path: str = "", true_class: str = "", pred_class: str = "") -> rs.Review:
    return rs.Review(key, reviewer, tuple(tags), note, suggested, path, true_class, pred_class)


def test_tag_edit_delete(results: Path) -> None:
    run, rows = run_of(results, "efficientnet_b0")
    key = key_for(run, rows, "Amanita/img_1.png")
    assert rs.load_reviews(results) == ()  # a store without the table has no reviews
    first = rs.save_review(results, review(key, " Ana ", "look_alike", note="cap colour"))
    assert first.reviewer == "Ana" and first.causes == ("look_alike",)
    edited = rs.save_review(results, review(key, "Ana", "look_alike", "poor_quality", note="blurred too",
                                            suggested="Boletus"))
    assert edited.suggested_label == ""  # a suggested label goes only with 'label doubtful'
    stored = rs.load_reviews(results)
    assert len(stored) == 1 and stored[0].causes == ("look_alike", "poor_quality") and stored[0].note == "blurred too"
    assert stored[0].created_at == first.created_at and edited.updated_at >= first.updated_at
    assert rs.delete_review(results, key, "Ana") is True
    assert rs.load_reviews(results) == () and rs.delete_review(results, key, "Ana") is False
    with pytest.raises(rs.MushcamError, match="at least one cause or write a note"):
        rs.save_review(results, review(key, "Ana"))
    with pytest.raises(rs.MushcamError, match="reviewer name"):
        rs.save_review(results, review(key, "  ", "other"))


def test_reviews_survive_reevaluation_and_show_under_other_models(results: Path, setup: dict[str, Path]) -> None:
    run, rows = run_of(results, "efficientnet_b0")
    key = key_for(run, rows, "Amanita/img_1.png")
    rs.save_review(results, review(key, "Ana", "wrong_region"))
    # evaluate the same checkpoint again: the run is replaced (new run id), the review stays and matches
    store.save_run(results, run_record("efficientnet_b0", setup["ckpt"], setup["data"], 12),
                   rows_for(setup["data"], PRED, CONF))
    again, again_rows = run_of(results, "efficientnet_b0")
    assert again.run_id != run.run_id
    index = rs.index_reviews(rs.load_reviews(results))
    assert [r.causes for r in index.of(key_for(again, again_rows, "Amanita/img_1.png"))] == [("wrong_region",)]
    # the same photo under MobileNet: found by the image's content hash
    other, other_rows = run_of(results, "mobilenet_v3_large")
    other_key = key_for(other, other_rows, "Amanita/img_1.png")
    assert index.of(other_key) == ()  # MobileNet's own error is not reviewed yet...
    assert [r.key.model for r in index.of_image(other_key.image_sha256)] == ["efficientnet_b0"]  # ...but shown


def _writer(path: str, reviewer: str, n: int) -> None:
    key = rs.ReviewKey
    for i in range(n):
        rs.save_review(path, rs.Review(key(f"{i:064x}", "m", "c" * 64), reviewer, ("other",), note=str(i)))
        rs.add_cause(path, f"cause {reviewer} {i % 3}")


def test_two_concurrent_writers_lose_nothing(results: Path) -> None:
    n = 20
    processes = [multiprocessing.get_context("fork").Process(target=_writer, args=(str(results), f"p{k}", n))
                 for k in range(2)]
    threads = [threading.Thread(target=_writer, args=(str(results), f"t{k}", n)) for k in range(2)]
    for worker in [*processes, *threads]:
        worker.start()
    for worker in [*processes, *threads]:
        worker.join(120)
    assert all(p.exitcode == 0 for p in processes)
    stored = rs.load_reviews(results)
    assert len(stored) == 4 * n
    assert {(r.reviewer, r.note) for r in stored} == {(w, str(i)) for w in ("p0", "p1", "t0", "t1") for i in range(n)}
    assert len(rs.load_custom_causes(results)) == 12  # 4 writers x 3 distinct labels
    assert len(store.load_store(results).runs) == 2  # the runs are untouched


def test_reviews_written_while_evaluate_replaces_a_run(results: Path, setup: dict[str, Path]) -> None:
    """An `evaluate` re-saving the same checkpoint's run while a reviewer tags: both writes land."""
    record = run_record("efficientnet_b0", setup["ckpt"], setup["data"], 12)
    rows = rows_for(setup["data"], PRED, CONF)

    def evaluate() -> None:
        for _ in range(5):
            store.save_run(results, record, rows)

    worker = threading.Thread(target=evaluate)
    worker.start()
    _writer(str(results), "Ana", 15)
    worker.join(60)
    assert len(rs.load_reviews(results)) == 15
    assert [r.backbone for r in store.load_store(results).runs] == ["efficientnet_b0", "mobilenet_v3_large"]


def test_malformed_review_rows_are_skipped_with_a_named_warning(results: Path) -> None:
    rs.save_review(results, rs.Review(rs.ReviewKey("0" * 64, "m", "c"), "Ana", ("other",), image_path="A/x.png"))
    with sqlite3.connect(results) as connection:
        connection.execute("UPDATE reviews SET causes_json = '{not json'")
    assert rs.load_reviews(results) == ()  # issue 18: skipped (was: a StoreError that stopped the whole page)
    assert rs.read_review_data(results).warnings == (
        "skipped 1 damaged review in the store (the review of 'A/x.png' by 'Ana': the causes are not a JSON list "
        "of cause keys); save that review again on the Errors page",)


def test_kappa_hand_computed() -> None:
    # 10 errors; A tags items 0-5, B tags 0-2 and 6: agree on 0-2 (yes) and 7-9 (no) -> p_o = 0.6
    a = [i < 6 for i in range(10)]
    b = [i < 3 or i == 6 for i in range(10)]
    # p_e = 0.6 * 0.4 + 0.4 * 0.6 = 0.48; kappa = (0.6 - 0.48) / 0.52
    assert cohen_kappa(a, b) == pytest.approx(0.12 / 0.52)
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert math.isnan(cohen_kappa([True, True], [True, True]))  # no variation: undefined
    assert cohen_kappa([True, False], [False, True]) == -1.0
    keys = [rs.ReviewKey(f"{i:064x}", "m", "c") for i in range(10)]
    reviews = [rs.Review(k, "A", ("look_alike",) if a[i] else ("other",)) for i, k in enumerate(keys)]
    reviews += [rs.Review(k, "B", ("look_alike",) if b[i] else ("other",)) for i, k in enumerate(keys)]
    reviews.append(rs.Review(rs.ReviewKey("f" * 64, "m", "c"), "C", ("other",)))  # C shares nothing
    pairs = pairwise_kappa(reviews, ["look_alike", "other"])
    assert [(p.reviewer_a, p.reviewer_b, p.n_items) for p in pairs] == [("A", "B", 10)]
    assert pairs[0].kappa["look_alike"] == pytest.approx(0.12 / 0.52)
    assert pairs[0].agreement["look_alike"] == pytest.approx(0.6)


def table(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def test_report_counts_equal_the_store(results: Path) -> None:
    run, rows = run_of(results, "efficientnet_b0")
    other, other_rows = run_of(results, "mobilenet_v3_large")
    tag = {"Amanita/img_1.png": ("look_alike", "wrong_region"), "Amanita/img_2.png": ("look_alike",),
           "Boletus/img_1.png": ("label_doubtful",)}
    for path, tags in tag.items():
        rs.save_review(results, review(key_for(run, rows, path), "Ana", *tags, path=path, true_class=path.split("/")[0],
                                       suggested="Boletus" if "label_doubtful" in tags else ""))
    rs.save_review(results, review(key_for(run, rows, "Amanita/img_1.png"), "Ben", "look_alike"))
    rs.save_review(results, review(key_for(other, other_rows, "Amanita/img_1.png"), "Ana", "poor_quality", note="dark"))
    contents = store.load_store(results)
    built = report.build_report(contents, rs.index_reviews(rs.load_reviews(results)), causes.DEFAULT_CAUSES)
    md = built.markdown()
    models = {row[0]: row for row in table(md, "Models")}
    for r in contents.runs:
        p = contents.predictions[r.run_id]
        errors = int((p.true_idx != p.pred_idx).sum())
        label = "EfficientNet-B0" if r.backbone == "efficientnet_b0" else "MobileNetV3-Large"
        assert models[label][1] == str(len(p)) and models[label][3] == str(errors)
        assert models[label][2] == f"{float((p.true_idx == p.pred_idx).mean()):.1%}"
    assert models["EfficientNet-B0"][4] == "3 of 6" and models["EfficientNet-B0"][6] == "3 of 6"
    assert models["MobileNetV3-Large"][6] == "1 of 1"
    causes_table = {row[0]: row[1:] for row in table(md, "Causes per model")}
    assert causes_table["look-alike genus"] == ["2 (66.7%)", "0 (0.0%)"]
    assert causes_table["poor photo quality"] == ["0 (0.0%)", "1 (100.0%)"]
    pairs = table(md, "Causes per class pair")
    assert ["EfficientNet-B0", "Amanita → Boletus", "1"] == pairs[0][:3]
    kappa = table(md, "Agreement between reviewers")
    assert kappa[0][:2] == ["Ana / Ben", "1"]
    assert "Not reviewed yet." in md  # Gyromitra/img_1, a dangerous error nobody reviewed
    assert md.count("### EfficientNet-B0 · ") == 3  # the three poisonous -> edible errors, one by one
    assert table(md, "Labels to check") == [["Boletus/img_1.png", "Boletus", "Boletus", "", "Ana"]]
    assert "<table>" in built.html() and "**" not in built.html()


def test_label_csv_round_trips(results: Path) -> None:
    run, rows = run_of(results, "efficientnet_b0")
    notes = ["plain", "has, comma and \"quotes\"", "=cmd|' /C calc'!A0", "'quoted", "line\nbreak", "ünïcødé"]
    for i, note in enumerate(notes):
        path = PATHS[i]
        rs.save_review(results, review(key_for(run, rows, path), f"R{i}", "label_doubtful", note=note,
                                       suggested="Suillus", path=path, true_class=path.split("/")[0]))
    rs.save_review(results, review(key_for(run, rows, PATHS[7]), "R0", "other", path=PATHS[7]))  # not exported
    fixes = labels.label_fixes(rs.load_reviews(results))
    text = labels.to_csv(fixes)
    assert text.splitlines()[0] == "path,current_label,suggested_label,note,reviewer"
    assert "'=cmd" in text  # a spreadsheet will not run it
    assert labels.read_csv(text) == fixes and len(fixes) == len(notes)
    assert {f.note for f in fixes} == set(notes)
    with pytest.raises(labels.MushcamError, match="not a label-fix CSV"):
        labels.read_csv("a,b\n1,2\n")


def test_dataset_file_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "A").mkdir(parents=True)
    (root / "A" / "x.png").write_bytes(b"x")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"y")
    (root / "A" / "link.png").symlink_to(outside)  # a symlinked dataset file: accepted
    (root / "Root").symlink_to("/")  # a class folder linking to /: refused
    assert dataset_file(root, "A/x.png") == root.resolve() / "A" / "x.png"
    assert dataset_file(root, "A/link.png").read_bytes() == b"y"
    for bad in ("../outside.png", "/etc/passwd", "Root/etc/passwd", "A/../../outside.png"):
        with pytest.raises(OutsideDataFolder):
            dataset_file(root, bad)
    # the whole file system as the data folder (the Errors page and review-report): refused before any
    # lookup, so a store's relative paths cannot reach /etc/passwd through it
    for whole in ("/", "//", "/tmp/.."):
        with pytest.raises(OutsideDataFolder, match="the whole file system"):
            dataset_file(whole, "etc/passwd")


def test_cli_review_report_and_export(results: Path, setup: dict[str, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run, rows = run_of(results, "efficientnet_b0")
    rs.save_review(results, review(key_for(run, rows, "Amanita/img_1.png"), "Ana", "label_doubtful", note="n",
                                   suggested="Boletus", path="Amanita/img_1.png", true_class="Amanita"))
    monkeypatch.setenv("MUSHCAM_CHECKPOINTS", str(setup["ckpt"]))
    out = tmp_path / "report"
    code = cli.main(["review-report", str(results), "--out", str(out), "--data", str(setup["data"]),
                     "--labels-csv", str(tmp_path / "fix.csv")])
    assert code == 0, capsys.readouterr().err
    html_text = (out / "review_report.html").read_text()
    md = (out / "review_report.md").read_text()
    figures = sorted((out / "figures").glob("*.png"))
    # 3 dangerous errors + 1 example (already among them) = 3 figures, each written once and embedded
    assert len(figures) == 3
    # issue 22: each figure is shown once (the example refers to its number) and the HTML embeds it as
    # WebP (was: the example repeated the figure, 4 PNG embeds; then JPEG)
    assert html_text.count("data:image/webp;base64,") == md.count("](figures/") == 3
    assert "data:image/png" not in html_text and "(see Figure " in md
    assert "figures/" not in html_text.replace("](figures/", "")
    assert labels.read_csv((tmp_path / "fix.csv").read_text())[0].suggested_label == "Boletus"
    code = cli.main(["export-labels", str(results), "--out", str(tmp_path / "l.csv")])
    assert code == 0 and (tmp_path / "l.csv").read_text() == (tmp_path / "fix.csv").read_text()
    # without --data, the store's own data folder is NOT used: no figures, and the report says why
    code = cli.main(["review-report", str(results), "--out", str(tmp_path / "r2")])
    assert code == 0
    assert "no image folder given" in (tmp_path / "r2" / "review_report.md").read_text()
    assert not (tmp_path / "r2" / "figures").exists()
    assert cli.main(["review-report", str(tmp_path / "absent.sqlite"), "--out", str(tmp_path / "r3")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_store_is_refused_when_not_a_mushcam_store(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    key = rs.ReviewKey("0" * 64, "m", "c")
    with pytest.raises(store.StoreError, match="not a MushCAM results store"):
        rs.save_review(other, rs.Review(key, "Ana", ("other",)))
    with pytest.raises(store.StoreError, match="no results store"):
        rs.save_review(tmp_path / "absent.sqlite", rs.Review(key, "Ana", ("other",)))
    assert not (tmp_path / "absent.sqlite").exists()


def test_causes_extend() -> None:
    assert [c.key for c in causes.DEFAULT_CAUSES][:5] == ["wrong_region", "partial_view", "look_alike",
                                                           "poor_quality", "unusual_angle"]
    added = causes.new_cause("  Mould /  rot ")
    assert added.key == "mould_rot" and added.label == "Mould / rot"
    assert causes.merged([added, causes.new_cause("other")])[-1] == added  # 'other' is built in already
    with pytest.raises(causes.MushcamError):
        causes.new_cause("   ")
    assert re.fullmatch(r"[a-z0-9_]+", causes.cause_key("Ünusual ängle!"))


def three_reviewers(results: Path) -> store.StoreContents:
    """One error tagged look-alike by Ana and Ben, 'other' by Cy; a second by Ana alone."""
    run, rows = run_of(results, "efficientnet_b0")
    key = key_for(run, rows, "Amanita/img_1.png")
    rs.save_review(results, review(key, "Ana", "look_alike"))
    rs.save_review(results, review(key, "Ben", "look_alike"))
    rs.save_review(results, review(key, "Cy", "other"))
    rs.save_review(results, review(key_for(run, rows, "Amanita/img_2.png"), "Ana", "look_alike"))
    return store.load_store(results)


@pytest.mark.parametrize(("rule", "look_alike", "other"), [
    ("any", "2 (100.0%)", "1 (50.0%)"),  # today's behaviour: one reviewer is enough
    ("majority", "2 (100.0%)", "0 (0.0%)"),  # 2 of 3 on the first error; 1 of 1 on the second
    ("all", "1 (50.0%)", "0 (0.0%)"),  # Cy did not say look-alike on the first error
])
def test_consensus_rule_decides_the_counts_and_is_stated(results: Path, rule: str, look_alike: str,
                                                         other: str) -> None:
    contents = three_reviewers(results)
    built = report.build_report(contents, rs.index_reviews(rs.load_reviews(results)), causes.DEFAULT_CAUSES,
                                consensus=rule)
    md = built.markdown()
    counts = {row[0]: row[1] for row in table(md, "Causes per model")}
    assert counts["look-alike genus"] == look_alike
    assert counts.get("other", "0 (0.0%)") == other
    assert f"Consensus rule '{rule}'" in md and f"consensus rule '{rule}'" in md  # introduction and provenance
    assert "(of 2 reviewed)" in md.split("## Causes per model", 1)[1].split("\n")[2]  # the denominator, in the header
    with pytest.raises(MushcamError, match="unknown consensus rule"):
        report.build_report(contents, rs.index_reviews(()), causes.DEFAULT_CAUSES, consensus="most")


def test_has_cause_rules() -> None:
    key = rs.ReviewKey("0" * 64, "m", "c")
    reviews = [review(key, "A", "x"), review(key, "B", "x"), review(key, "C")]
    assert [agreement.has_cause(reviews, "x", rule) for rule in ("any", "majority", "all")] == [True, True, False]
    assert [agreement.has_cause(reviews[:1] + reviews[2:], "x", r) for r in ("any", "majority", "all")] == \
        [True, False, False]  # 1 of 2 is not a majority
    assert not agreement.has_cause((), "x", "any")


def test_kappa_interval_is_seeded_and_contains_kappa() -> None:
    a = [True] * 6 + [False] * 4 + [True, False] * 10
    b = [True] * 4 + [False] * 4 + [True, True] + [True, False] * 10
    first, again = agreement.kappa_interval(a, b), agreement.kappa_interval(a, b)
    assert first == again  # seeded: the same report twice says the same interval
    assert first[0] <= cohen_kappa(a, b) <= first[1] and -1.0 <= first[0] < first[1] <= 1.0
    assert agreement.kappa_interval(a, b, seed=1) != first
    assert all(math.isnan(v) for v in agreement.kappa_interval([True] * 5, [True] * 5))  # never defined
    wide = agreement.kappa_interval(a[:10], b[:10])
    assert wide[1] - wide[0] > first[1] - first[0]  # fewer shared items, a wider interval


def test_report_agreement_states_n_raw_agreement_interval_and_warns_under_20(results: Path) -> None:
    contents = three_reviewers(results)
    built = report.build_report(contents, rs.index_reviews(rs.load_reviews(results)), causes.DEFAULT_CAUSES)
    md = built.markdown()
    rows = {row[0]: row for row in table(md, "Agreement between reviewers")}
    assert rows["Ana / Ben"][1] == "1" and rows["Ana / Cy"][1] == "1"
    assert all("agree 1 of 1 (100.0%)" in cell or "agree 0 of 1 (0.0%)" in cell for cell in rows["Ana / Cy"][2:])
    assert "κ n/a" in rows["Ana / Ben"][2]  # one shared error: kappa is undefined, and said so
    assert "**Warning**: fewer than 20 shared errors for Ana / Ben (n = 1)" in md
    pair = agreement.pairwise_kappa([review(rs.ReviewKey(f"{i:064d}", "m", "c"), who, *(["x"] if (i + j) % 3 else []))
                                     for i in range(25) for j, who in enumerate(("A", "B"))], ["x"])[0]
    assert pair.n_items == 25 and not pair.few
    assert "Warning" not in "".join(b.text for b in report.agreement_blocks([pair], ["x"], {"x": "x"}))
    low, high = pair.interval["x"]
    assert f"[{low:.2f}, {high:.2f}]" in report.agreement_blocks([pair], ["x"], {"x": "x"})[1].rows[0][2]


def test_report_provenance_reviewers_confusion_and_codebook(results: Path, tmp_path: Path) -> None:
    contents = three_reviewers(results)
    built = report.build_report(contents, rs.index_reviews(rs.load_reviews(results)), causes.DEFAULT_CAUSES,
                                data_root=tmp_path)
    md = built.markdown()
    provenance = {row[0]: row for row in table(md, "Provenance")}
    for run in contents.runs:
        row = provenance[run.label]
        assert row[1] == run.checkpoint_sha256 and len(row[1]) == 64 and row[2] == run.layer
        assert row[3].startswith(f"{run.manifest['input']['size']} px") and row[4] == "Grad-CAM"
        assert row[5] == run.data_root and row[6] == run.finished_at
    assert f"by MushCAM {mushcam.__version__}" in md and f"read from {tmp_path.resolve()}" in md
    n_errors = sum(int((p.true_idx != p.pred_idx).sum()) for p in contents.predictions.values())
    reviewers = {row[0]: row for row in table(md, "Reviewers")}
    assert reviewers["Ana"][1] == report.k_of_n(2, n_errors) and reviewers["Cy"][1] == report.k_of_n(1, n_errors)
    assert reviewers["Ana"][2] == "2 of 2 (100.0%)"  # look-alike, of Ana's own reviews
    matrices = md.split("## Confusion matrices\n", 1)[1].split("\n## ", 1)[0]
    for run in contents.runs:
        rows = contents.predictions[run.run_id]
        assert f"### {run.label} (n = {len(rows)})" in matrices
    first = [line for line in matrices.splitlines() if line.startswith("|")][2:]
    cells = [[int(c) for c in line.strip("|").split(" | ")[1:]] for line in first[:len(contents.runs[0].class_names)]]
    rows = contents.predictions[contents.runs[0].run_id]
    assert sum(r[-1] for r in cells) == len(rows) == sum(sum(r[:-1]) for r in cells)
    assert sum(cells[i][i] for i in range(len(cells))) == int((rows.true_idx == rows.pred_idx).sum())
    codebook = {row[1]: row[2] for row in table(md, "Cause codebook")}
    assert set(codebook) == {c.key for c in causes.DEFAULT_CAUSES} and all(codebook.values())
    assert "watermark" in codebook["shortcut"]


def test_each_figure_once_numbered_and_webp_in_html(results: Path) -> None:
    """A figure shown among the dangerous errors is referred to by number in the examples, not repeated."""
    contents = three_reviewers(results)
    made: list[str] = []

    def figures(run: store.RunRecord, rows: store.Predictions, index: int) -> tuple[bytes | None, str]:
        made.append(rows.image_paths[index])
        rng = np.random.default_rng(len(made))
        return to_png(rng.integers(0, 255, (60, 180, 3), dtype=np.uint8)), ""

    built = report.build_report(contents, rs.index_reviews(rs.load_reviews(results)), causes.DEFAULT_CAUSES, figures)
    md, page = built.markdown(), built.html()
    assert len(made) == len(set(made)) == len(built.figures) >= 2  # each figure made once
    numbers = re.findall(r"!\[Figure (\d+)\. ", md)
    assert numbers == [str(i) for i in range(1, len(built.figures) + 1)]  # numbered in order, each shown once
    assert md.count("](figures/") == len(built.figures) and "(see Figure " in md
    for name in built.figures:
        assert md.count(f"figures/{name}.png") == 1
    assert page.count("data:image/webp;base64,") == len(built.figures) and "image/png" not in page
    assert report.render_html(built.blocks, built.figures, webp=False).count("data:image/jpeg;base64,") == len(
        built.figures)  # the fallback where Pillow has no WebP
    assert page.count("<figcaption>Figure ") == len(built.figures)
    assert "one colour bar" in md


def test_html_jpeg_is_smaller_than_png() -> None:
    gradient = np.dstack([np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))] * 3)
    noise = np.random.default_rng(0).integers(0, 40, gradient.shape, dtype=np.uint8)
    png = to_png(gradient + noise)
    jpeg = report.html_jpeg(png)
    assert jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) < len(png) / 2
    webp = report.html_webp(png)
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP" and len(webp) < len(jpeg)
    assert report.html_figure(png, webp=True)[0] == "image/webp" and report.html_figure(png, webp=False)[0] == (
        "image/jpeg")


def test_cli_refuses_an_unknown_consensus_rule(results: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["review-report", str(results), "--out", str(tmp_path / "r"), "--consensus", "most"])
    assert stop.value.code == 2 and "invalid choice: 'most'" in capsys.readouterr().err
    assert cli.main(["review-report", str(results), "--out", str(tmp_path / "r"), "--no-figures",
                     "--consensus", "all"]) == 0
    assert "Consensus rule 'all'" in (tmp_path / "r" / "review_report.md").read_text()
