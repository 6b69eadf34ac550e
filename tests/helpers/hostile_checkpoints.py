"""Round two of hostile checkpoints (issue 18 §2), made for the library, CLI and page tests.

``make_checkpoint(kind, folder)`` writes one hostile checkpoint (or a link to a system file)
and returns its path; ``write_entry_folder`` writes a manifest with one model entry beside
it, so a command or a page meets the checkpoint the way a user's folder would give it.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import torch
from factories import CLASSES

NAMES = [name for name, _ in CLASSES]
SECRET = "hunter2-secret-token"  # what a text file named as a checkpoint must never show


def tiny_state() -> dict[str, torch.Tensor]:
    """A few small tensors (a head only): enough for reading, not for building a model."""
    generator = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(4, 8, generator=generator), "fc.bias": torch.zeros(4)}


def write_million_safetensors(path: Path, count: int = 1_000_000) -> Path:
    """A safetensors file of ``count`` one-float tensors: a real header (~70 MB for a million),
    the data left sparse (``truncate``), so it costs seconds, not gigabytes, to make."""
    entries = (f'"t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}' for i in range(count))
    header = ("{" + ",".join(entries) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)))
        handle.write(header)
        handle.truncate(8 + len(header) + 4 * count)
    return path


def make_checkpoint(kind: str, folder: Path) -> Path:
    """Write the hostile checkpoint ``kind`` into ``folder`` (see the kinds below)."""
    path = folder / f"{kind}.pt"
    if kind == "empty_dict":
        torch.save({}, path)
    elif kind == "empty_state_dict":
        torch.save({"state_dict": {}, "epoch": 3}, path)
    elif kind in ("float8_e4m3fn", "float8_e5m2"):
        torch.save({k: v.to(getattr(torch, kind)) for k, v in tiny_state().items()}, path)
    elif kind == "protocol4":
        torch.save(tiny_state(), path, pickle_protocol=4)
    elif kind == "protocol4_legacy":
        torch.save(tiny_state(), path, pickle_protocol=4, _use_new_zipfile_serialization=False)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"fc.weight": [0.0] * 8}, protocol=4))
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "proc_self_mem":
        path.symlink_to("/proc/self/mem")
    elif kind == "etc_passwd":
        path.symlink_to("/etc/passwd")
    elif kind == "secret_text":
        path.write_text(f"password={SECRET}\nuser=admin\n")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "tiny":
        torch.save(tiny_state(), path)
    else:
        raise AssertionError(kind)
    return path


def write_entry_folder(folder: Path, entry: dict, checkpoint: str | None = None, name: str = "mine",
                       classes: list[str] | None = None, size: int = 64) -> Path:
    """``folder/manifest.json`` with the one model ``name`` (``entry``, ``checkpoint`` set when given)."""
    folder.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        entry = {**entry, "checkpoint": checkpoint}
    manifest = {"classes": classes or NAMES, "input": {"size": size}, "models": {name: entry}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
