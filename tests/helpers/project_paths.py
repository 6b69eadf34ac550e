"""Where the project's own files are, for tests at any depth under tests/.

Tests used to find the project as ``Path(__file__).parent.parent``, which breaks when a test
moves one folder deeper; they import ``PROJECT_ROOT`` from here instead.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parents[2]  # tests/helpers/project_paths.py -> the repository
