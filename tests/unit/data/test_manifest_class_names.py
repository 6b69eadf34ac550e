"""Class names must differ after NFKC normalisation and case folding (issue 18 §2, item 11):
``--target``, class folders and ``Manifest.class_index`` match them case-insensitively, so
``Amanita`` beside ``amanita`` would be one class to them and two to the model."""

from __future__ import annotations

import pytest

from mushcam.manifest import ManifestError, class_key, manifest_from_dict


@pytest.mark.parametrize(("names", "first", "second"), [
    (["Amanita", "amanita"], "Amanita", "amanita"),
    (["Boletus", "AMANITA", "amanita"], "AMANITA", "amanita"),
    (["Amanita", "ＡＭＡＮＩＴＡ"], "Amanita", "ＡＭＡＮＩＴＡ"),  # fullwidth letters: NFKC makes them ASCII
    (["Straße", "STRASSE"], "Straße", "STRASSE"),  # casefold: ß = ss
    (["ﬁstulina", "Fistulina"], "ﬁstulina", "Fistulina"),  # the ligature ﬁ
])
def test_names_that_collide_case_insensitively_are_refused_naming_both(names, first, second) -> None:
    with pytest.raises(ManifestError) as error:
        manifest_from_dict({"classes": names, "models": {}}, ".")
    assert str(error.value) == (
        f"manifest: field 'classes' has {first!r} and {second!r}, which differ only in case or Unicode form; class "
        "names are matched case-insensitively (--target, class folders), so rename one")


def test_exact_duplicates_keep_their_message_and_distinct_names_load() -> None:
    with pytest.raises(ManifestError, match="has duplicate names: Amanita"):
        manifest_from_dict({"classes": ["Amanita", "Amanita"], "models": {}}, ".")
    manifest = manifest_from_dict({"classes": ["Amanita", "Amanitopsis", "Boletus"], "models": {}}, ".")
    assert manifest.class_names == ["Amanita", "Amanitopsis", "Boletus"]
    assert class_key("ＡＭＡＮＩＴＡ") == class_key("amanita") == "amanita"
