"""Object regions (CSV, COCO, GrabCut proposals) and the patterns tables of the results store."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from mushcam.patterns.focus import FocusSummary, Interval
from mushcam.patterns.regions import Region, RegionError, propose_region, read_regions
from mushcam.patterns.store import PatternsKey, load_clusters, load_focus, load_regions, save_focus, save_regions
from mushcam.store import StoreError


def test_csv_and_coco_regions_are_read_and_bad_ones_refused(tmp_path):
    csv_file = tmp_path / "boxes.csv"
    csv_file.write_text("path,x0,y0,x1,y1\nA/1.jpg,1,2,30,40\nB/2.jpg,0,0,5.5,6\n", encoding="utf-8")
    assert read_regions(csv_file) == [Region("A/1.jpg", 1, 2, 30, 40), Region("B/2.jpg", 0, 0, 5.5, 6)]
    coco = {"images": [{"id": 7, "file_name": "A/1.jpg"}],
            "annotations": [{"image_id": 7, "bbox": [10, 10, 5, 5]}, {"image_id": 7, "bbox": [2, 12, 4, 10]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")
    assert read_regions(tmp_path / "coco.json") == [Region("A/1.jpg", 2, 10, 15, 22)]
    for text in ("path,x0,y0,x1,y1\nA/1.jpg,5,5,1,9\n", "path,x0,y0,x1,y1\nA/1.jpg,nan,0,1,1\n", "a,b\n1,2\n"):
        csv_file.write_text(text, encoding="utf-8")
        with pytest.raises(RegionError):
            read_regions(csv_file)
    (tmp_path / "bad.json").write_text('{"images": 3}', encoding="utf-8")
    with pytest.raises(RegionError):
        read_regions(tmp_path / "bad.json")
    with pytest.raises(RegionError):
        read_regions(tmp_path / "boxes.txt")


def test_grabcut_proposes_the_object_and_marks_it_proposed():
    pixels = np.full((120, 160, 3), 40, np.uint8)
    pixels[30:90, 60:110] = (220, 60, 30)
    region = propose_region(Image.fromarray(pixels), "A/x.jpg")
    assert region.source == "proposed"
    assert region.box == pytest.approx((60, 30, 110, 90), abs=4)


def test_regions_and_focus_round_trip_through_the_store_and_bad_rows_are_refused(tmp_path):
    store = tmp_path / "results.sqlite"
    save_regions(store, [("ab" * 32, Region("A/1.jpg", 1, 2, 3, 4, "proposed"))])
    save_regions(store, [("ab" * 32, Region("A/1.jpg", 1, 2, 5, 6, "accepted"))])
    assert load_regions(store) == {"ab" * 32: Region("A/1.jpg", 1, 2, 5, 6, "accepted")}
    key = PatternsKey("toy", "0" * 64, "gradcam", "/data")
    summary = FocusSummary(5, Interval(0.4, 0.3, 0.5), Interval(0.6, 0.2, 1.0), 0.1)
    save_focus(store, key, "layer4", summary)
    [stored] = load_focus(store)
    assert (stored.key, stored.layer, stored.summary) == (key, "layer4", summary)
    assert load_clusters(store) == []
    with sqlite3.connect(store) as connection:
        connection.execute("UPDATE patterns_regions SET x1 = -1")
    with pytest.raises(StoreError):
        load_regions(store)
