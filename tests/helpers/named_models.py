"""The five user-named models of factories.FIVE_MODELS: their names and the labels the app shows for them.

Moved here from test_named_models.py so that no test module imports another.
"""

from __future__ import annotations

from factories import FIVE_MODELS

NAMES = list(FIVE_MODELS)
LABELS = ["ResNet-50", "ResNet-50 (poisonous ×4)", "EfficientNet-B0", "MobileNetV3-Large", "Thesis MobileNetV3"]
