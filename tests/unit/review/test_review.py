"""Error review: storing reviews, several reviewers, kappa, the report, labels CSV, the CLI."""

from __future__ import annotations

import math
import multiprocessing
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from errors_setup import CONF, PATHS, PRED, rows_for, run_record, write_errors_setup

from mushcam import cli, store
from mushcam.review import causes, labels, report
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


def test_malformed_review_rows_give_one_clear_error(results: Path) -> None:
    rs.save_review(results, rs.Review(rs.ReviewKey("0" * 64, "m", "c"), "Ana", ("other",), image_path="A/x.png"))
    with sqlite3.connect(results) as connection:
        connection.execute("UPDATE reviews SET causes_json = '{not json'")
    with pytest.raises(store.StoreError, match="a stored review of A/x.png has malformed causes"):
        rs.load_reviews(results)


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
    assert html_text.count("data:image/png;base64,") == md.count("](figures/") == 4
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
