"""MushCAM: Grad-CAM explanations for mushroom-genus classifiers (no UI code here)."""

__version__ = "0.1.0"
