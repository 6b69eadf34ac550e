"""Metrics on predictions whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mushcam import metrics
from mushcam.metrics import BENIGN, CORRECT, DANGEROUS, OTHER_WRONG

NAMES = ["Amanita", "Boletus", "Gyromitra", "Suillus", "Coprinopsis"]
TOX = ["poisonous", "edible", "poisonous", "edible", "mixed"]

# 12 images; A=Amanita(p) B=Boletus(e) G=Gyromitra(p) S=Suillus(e) C=Coprinopsis(mixed)
TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4]
PRED = [0, 1, 3, 4, 1, 0, 2, 2, 3, 3, 1, 4]
#        ok  A>B A>S A>C ok  B>A B>G ok  G>S ok  C>B ok
# dangerous (poisonous -> edible): A>B, A>S, G>S = 3 of 6 poisonous images
# benign (edible -> poisonous):    B>A, B>G     = 2 of 4 edible images
# other wrong: A>C (poisonous -> mixed), C>B (mixed -> edible) = 2


def test_confusion_matrix_counts_each_pair() -> None:
    confusion = metrics.confusion_matrix(TRUE, PRED, 5)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(TRUE, PRED, strict=True):
        expected[t, p] += 1
    assert confusion.tolist() == expected.tolist()
    assert confusion[0].tolist() == [1, 1, 0, 1, 1]
    assert confusion.sum() == 12


def test_accuracy() -> None:
    assert metrics.accuracy(TRUE, PRED) == pytest.approx(5 / 12)
    assert math.isnan(metrics.accuracy([], []))


def test_error_kinds_by_toxicity() -> None:
    kinds = metrics.error_kinds(TRUE, PRED, TOX)
    assert kinds.tolist() == [
        CORRECT, DANGEROUS, DANGEROUS, OTHER_WRONG, CORRECT, BENIGN, BENIGN, CORRECT, DANGEROUS, CORRECT,
        OTHER_WRONG, CORRECT,
    ]


def test_dangerous_and_benign_counts_and_rates() -> None:
    assert metrics.dangerous_error_count(TRUE, PRED, TOX) == 3
    assert metrics.dangerous_error_rate(TRUE, PRED, TOX) == pytest.approx(3 / 6)
    assert metrics.benign_error_count(TRUE, PRED, TOX) == 2
    assert metrics.benign_error_rate(TRUE, PRED, TOX) == pytest.approx(2 / 4)


def test_mixed_and_unknown_toxicity_are_neither_dangerous_nor_benign() -> None:
    tox = ["poisonous", "mixed", "unknown", "edible", "inedible"]
    true = [0, 0, 1, 2, 4, 3]
    pred = [1, 2, 3, 3, 0, 4]  # poisonous->mixed, poisonous->unknown, mixed->edible, ..., edible->inedible
    assert metrics.dangerous_error_count(true, pred, tox) == 0
    assert metrics.benign_error_count(true, pred, tox) == 0
    assert metrics.error_kinds(true, pred, tox).tolist() == [OTHER_WRONG, OTHER_WRONG, OTHER_WRONG, OTHER_WRONG,
                                                             OTHER_WRONG, OTHER_WRONG]


def test_rates_are_nan_without_a_denominator() -> None:
    tox = ["edible", "edible"]
    assert metrics.dangerous_error_count([0, 1], [1, 0], tox) == 0
    assert math.isnan(metrics.dangerous_error_rate([0, 1], [1, 0], tox))
    assert math.isnan(metrics.benign_error_rate([0], [0], ["poisonous"]))
    assert metrics.format_rate(0, float("nan"), 0) == "0 / 0 (n/a)"
    assert metrics.format_rate(3, 3 / 85, 85) == "3 / 85 (3.5%)"


def test_per_class_precision_recall_f1() -> None:
    m = metrics.compute_metrics(TRUE, PRED, NAMES, TOX)
    by_name = {c.name: c for c in m.classes}
    # Amanita: TP 1, support 4, predicted 2 (rows 0 and 5)
    assert (by_name["Amanita"].support, by_name["Amanita"].predicted) == (4, 2)
    assert by_name["Amanita"].precision == pytest.approx(1 / 2)
    assert by_name["Amanita"].recall == pytest.approx(1 / 4)
    assert by_name["Amanita"].f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    # Suillus: TP 1, support 1, predicted 3
    assert by_name["Suillus"].precision == pytest.approx(1 / 3)
    assert by_name["Suillus"].recall == pytest.approx(1.0)
    assert by_name["Suillus"].f1 == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    # Boletus: TP 1, support 3, predicted 3 (rows 1, 4, 10)
    assert by_name["Boletus"].precision == pytest.approx(1 / 3)
    assert by_name["Boletus"].recall == pytest.approx(1 / 3)
    assert m.macro_f1 == pytest.approx(np.mean([c.f1 for c in m.classes]))


def test_class_never_predicted_has_undefined_precision_and_zero_f1() -> None:
    m = metrics.compute_metrics([0, 1], [0, 0], ["A", "B"], ["edible", "poisonous"])
    b = m.classes[1]
    assert math.isnan(b.precision) and b.recall == 0.0 and b.f1 == 0.0
    empty = metrics.compute_metrics([0], [0], ["A", "B"], ["edible", "poisonous"]).classes[1]
    assert empty.support == 0 and math.isnan(empty.recall) and math.isnan(empty.f1)


def test_compute_metrics_summary_matches_the_parts() -> None:
    m = metrics.compute_metrics(TRUE, PRED, NAMES, TOX)
    assert m.n_images == 12 and m.accuracy == pytest.approx(5 / 12)
    assert (m.dangerous_count, m.poisonous_images, m.benign_count, m.edible_images) == (3, 6, 2, 4)
    assert m.dangerous_rate == pytest.approx(0.5) and m.benign_rate == pytest.approx(0.5)
    assert m.confusion.tolist() == metrics.confusion_matrix(TRUE, PRED, 5).tolist()


def test_random_predictions_agree_with_a_plain_loop() -> None:
    rng = np.random.default_rng(7)
    tox = ["poisonous", "edible", "mixed", "edible", "poisonous", "unknown"]
    true = rng.integers(0, 6, 500)
    pred = rng.integers(0, 6, 500)
    dangerous = sum(1 for t, p in zip(true, pred, strict=True) if tox[t] == "poisonous" and tox[p] == "edible")
    benign = sum(1 for t, p in zip(true, pred, strict=True) if tox[t] == "edible" and tox[p] == "poisonous")
    m = metrics.compute_metrics(true, pred, [f"c{i}" for i in range(6)], tox)
    assert m.dangerous_count == dangerous and m.benign_count == benign
    assert m.poisonous_images == sum(tox[t] == "poisonous" for t in true)
    for i, c in enumerate(m.classes):
        tp = int(((true == i) & (pred == i)).sum())
        assert c.precision == pytest.approx(tp / (pred == i).sum())
        assert c.recall == pytest.approx(tp / (true == i).sum())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        metrics.confusion_matrix([0, 5], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="toxicities"):
        metrics.compute_metrics([0], [0], ["A", "B"], ["edible"])
