"""Chance-level accuracy and collapsed predictions, against hand computations."""

from __future__ import annotations

import math

import pytest

from mushcam.metrics.health import chance_check, collapse_check, wilson_interval


def test_wilson_interval_matches_the_formula_by_hand():
    # 30 of 235 right (12.8 %): p = 0.12766, z = 1.96
    p, n, z = 30 / 235, 235, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson_interval(30, 235)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert low == pytest.approx(0.0908, abs=1e-3) and high == pytest.approx(0.1766, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_12_8_percent_on_8_classes_is_chance_and_45_percent_is_not():
    at_chance = chance_check(30, 235, 8)
    assert at_chance.at_chance and "is not above chance (12.5% for 8 classes)" in at_chance.warning
    assert "n = 235" in at_chance.warning
    learned = chance_check(106, 235, 8)  # 45.1 %
    assert not learned.at_chance and learned.warning is None


def test_one_class_for_every_photo_is_a_collapse_and_a_spread_is_not():
    every_amanita = ["Amanita"] * 50
    check = collapse_check(every_amanita, 8)
    assert check.collapsed and check.share == 1.0
    assert check.warning.startswith("the model's predictions collapse onto Amanita: 100% of 50")
    two = ["Amanita"] * 30 + ["Gyromitra"] * 16 + ["Boletus"] * 4
    assert collapse_check(two, 8).collapsed and "Amanita and Gyromitra" in collapse_check(two, 8).warning
    spread = [name for name in "ABCDEFGH" for _ in range(6)]
    assert not collapse_check(spread, 8).collapsed and collapse_check(spread, 8).warning is None


def test_few_classes_or_few_photos_never_count_as_collapse():
    assert not collapse_check(["A"] * 50, 3).collapsed  # with 3 classes two of them are most of anything
    assert not collapse_check(["A"] * 5, 8).collapsed


def test_model_health_of_a_run_gives_both_warnings_for_a_model_that_calls_everything_amanita():
    from mushcam.metrics.health import model_health

    names = ["Amanita", "Boletus", "Coprinellus", "Coprinopsis", "Ganoderma", "Gyromitra", "Omphalotus", "Volvo"]
    true = [i % 8 for i in range(80)]
    health = model_health(true, [0] * 80, names)
    assert health.collapse.collapsed and health.chance.at_chance  # 10 of 80 right = 12.5 %
    assert len(health.warnings) == 2 and "collapse onto Amanita" in health.warnings[0]
    good = model_health(true, true, names)
    assert good.warnings == []
    unknown = model_health([-1] * 20, list(range(8)) * 2 + [0] * 4, names)
    assert unknown.chance.n == 0 and not unknown.chance.at_chance and not unknown.collapse.collapsed
    assert unknown.warnings == []
