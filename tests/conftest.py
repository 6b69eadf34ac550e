from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# A process started in the background by a non-interactive shell inherits SIGINT as ignored,
# and Python then installs no KeyboardInterrupt handler; tests of Ctrl-C handling expect the
# ordinary one, however pytest was launched.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# One intra-op thread: on a shared 2-core host, two spinning OpenMP threads made small
# forward passes 10-15x slower whenever another process (a streamlit server, a neighbour)
# took a core; single-threaded tests are immune and lose little on tiny inputs.
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "mushrooms"


@pytest.fixture
def real_data() -> Path:
    """The shared real-photo set; tests that need it skip, with the reason, where it is absent."""
    if not (SHARED_DATA / "test").is_dir():
        pytest.skip(f"real photos not found at {SHARED_DATA} (they live in ../shared, outside the repository)")
    return SHARED_DATA


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    """A checkpoint folder with random-weight checkpoints for all three backbones (64 px input)."""
    from factories import write_manifest

    write_manifest(tmp_path / "ckpt")
    return tmp_path / "ckpt"


@pytest.fixture(autouse=True)
def private_cam_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own on-disk CAM cache: nothing is read from or left in ~/.cache."""
    folder = tmp_path_factory.mktemp("cam-cache")
    monkeypatch.setenv("MUSHCAM_CACHE", str(folder))
    return folder


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own settings folder (remembered code consent): ~/.config is never read or written."""
    folder = tmp_path_factory.mktemp("settings")
    monkeypatch.setenv("MUSHCAM_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def fresh_streamlit_caches() -> Iterator[None]:
    """Empty Streamlit's caches before and after a test (they outlive AppTest instances)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()
