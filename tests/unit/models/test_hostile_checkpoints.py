"""Hostile and broken checkpoints: each gets one clear line that says what to do, nothing runs,
nothing costs gigabytes, and torch's advice to retry with weights_only=False never shows."""

from __future__ import annotations

import builtins
import collections
import functools
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from project_paths import PROJECT_ROOT
from torch import nn

from mushcam.models import CheckpointError, load_checkpoint

PROJECT = PROJECT_ROOT


class Payload:
    """Unpickling calls ``func(*args)``: the real shapes of malicious checkpoints."""

    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@functools.cache
def _resnet18_state(classes: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=classes).state_dict()


def resnet18_state(classes: int = 4) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _resnet18_state(classes).items()}


def _tensor_pickle(numel: int) -> bytes:
    """torch.save's pickle of ``{"fc.weight": <float tensor of numel>}`` (storage record "0")."""
    storage = object()

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (numel,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"fc.weight": Rebuild()})
    return buffer.getvalue()


def write_zip_bomb(path: Path, nbytes: int, chunk: int = 16 << 20) -> Path:
    """A torch zip checkpoint whose one tensor is ``nbytes`` of deflated zeros (~1000x smaller).

    Written by hand: deflate segments ended by a full flush are independent, so one 16 MB
    segment repeated is a valid stream and the file takes seconds, not minutes, to make.
    """
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    count = nbytes // chunk
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    small = {"bomb/data.pkl": _tensor_pickle(count * chunk // 4), "bomb/byteorder": b"little", "bomb/version": b"3\n"}
    central = b""
    with open(path, "wb") as out:
        for name, data in [*small.items(), ("bomb/data/0", None)]:
            offset = out.tell()
            if data is not None:
                method, crc_e, size, csize = 0, zlib.crc32(data), len(data), len(data)
            else:
                method, crc_e, size, csize = 8, crc, count * chunk, len(segment) * count + len(tail)
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc_e, csize, size, len(name), 0))
            out.write(name.encode())
            if data is not None:
                out.write(data)
            else:
                for _ in range(count):
                    out.write(segment)
                out.write(tail)
            central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc_e, csize, size,
                                   len(name), 0, 0, 0, 0, 0, offset) + name.encode()
        start = out.tell()
        out.write(central)
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 4, 4, len(central), start, 0))
    return path


def make(kind: str, folder: Path) -> Path:
    """Write the hostile checkpoint ``kind`` into ``folder``; returns its path."""
    path = folder / f"{kind}.pt"
    marker = folder / "pwned.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, these are not weights\n")
    elif kind == "lfs_pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 102400\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "random_bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        torch.save(resnet18_state(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "os_system":
        torch.save({"fc.weight": Payload(os.system, f"touch {marker}")}, path)
    elif kind == "subprocess_popen":
        torch.save({"fc.weight": Payload(subprocess.Popen, ["touch", str(marker)])}, path)
    elif kind == "subprocess_call":
        torch.save({"fc.weight": Payload(subprocess.call, ["touch", str(marker)])}, path)
    elif kind == "builtins_eval":
        torch.save({"fc.weight": Payload(builtins.eval, f"open({str(marker)!r}, 'w')")}, path)
    elif kind == "builtins_exec":
        torch.save({"fc.weight": Payload(builtins.exec, f"open({str(marker)!r}, 'w')")}, path)
    elif kind == "raw_pickle_os_system":
        path.write_bytes(pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2))
    elif kind == "whole_model":
        torch.save(torchvision.models.resnet18(num_classes=4), path)
    elif kind == "nan_weights":
        state = resnet18_state()
        state["fc.weight"][0, :3] = float("nan")
        state["layer1.0.bn1.running_var"][0] = float("inf")
        torch.save(state, path)
    elif kind == "only_metadata":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif kind == "trunk_only":
        torch.save({k: v for k, v in resnet18_state().items() if not k.startswith("fc.")}, path)
    elif kind == "wrong_arch":
        torch.save(torchvision.models.mobilenet_v3_small(num_classes=4).state_dict(), path)
    elif kind == "wrong_variant":
        torch.save(torchvision.models.resnet34(num_classes=4).state_dict(), path)
    elif kind == "odd_head":
        state = {f"backbone.{k}": v for k, v in resnet18_state().items() if not k.startswith("fc.")}
        state["head.attn.in_proj_weight"] = torch.randn(48, 16, 3, 3)
        torch.save(state, path)
    elif kind == "class_count":
        torch.save(resnet18_state(9), path)
    elif kind == "safetensors_truncated":
        from safetensors.torch import save_file

        path = folder / "cut.safetensors"
        save_file(resnet18_state(), str(path))
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "zip_bomb":
        write_zip_bomb(path, 1536 << 20)
    else:
        raise AssertionError(kind)
    return path


CATALOGUE = [
    ("empty", "the file is empty \\(0 bytes\\)"),
    ("text", "it is a text file, not a PyTorch checkpoint"),
    ("lfs_pointer", "it is a Git LFS pointer, not the weights; fetch them with 'git lfs pull'"),
    ("folder", "is a folder, not a weights file"),
    ("random_bytes", "not a PyTorch \\(.pt/.pth\\) or safetensors weights file, or it is damaged"),
    ("truncated", "it is damaged or truncated"),
    ("os_system", "would call (os|posix).system when loaded"),
    ("subprocess_popen", "would call subprocess.Popen when loaded"),
    ("subprocess_call", "would call subprocess.call when loaded"),
    ("builtins_eval", "would call builtins.eval when loaded"),
    ("builtins_exec", "would call builtins.exec when loaded"),
    ("raw_pickle_os_system", "refused raw_pickle_os_system.pt|not a PyTorch weights file"),
    ("whole_model", "whole pickled model .*python -m mushcam import-checkpoint whole_model.pt --trust"),
    ("nan_weights",
     "has 2 tensors whose values are not finite \\(NaN or infinite\\): layer1.0.bn1.running_var \\(1 of 64\\), "
     "fc.weight \\(3 of 2048\\)"),
    ("only_metadata", "entry 'epoch' is a int, not a tensor"),
    ("trunk_only", "holds resnet18's trunk but no classification head"),
    ("wrong_arch", "it is not a resnet18 .*set \"arch\": \"mobilenet_v3_small\""),
    ("wrong_variant", "96 unexpected keys .*its trunk fits resnet34: set \"arch\": \"resnet34\""),
    ("odd_head",
     "resnet18's trunk was found, but cannot rebuild a head layer from head.attn.in_proj_weight "
     "\\(48, 16, 3, 3\\).*\"code\""),
    ("class_count", "has 9 classes \\(fc.weight \\(9, 512\\)\\), but 4 were expected"),
    ("safetensors_truncated", "safetensors header is damaged or the file is truncated"),
]


@pytest.mark.parametrize(("kind", "expected"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_each_hostile_checkpoint_gets_one_clear_line(tmp_path: Path, kind, expected):
    if kind == "safetensors_truncated":
        pytest.importorskip("safetensors")
    path = make(kind, tmp_path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, "resnet18", num_classes=4)
    message = str(caught.value)
    assert caught.value.__cause__ is None
    assert "\n" not in message
    assert "weights_only" not in message and "Weights only" not in message
    import re

    assert re.search(expected, message), message
    assert not (tmp_path / "pwned.txt").exists()


def test_the_cli_says_the_same_in_one_line(tmp_path: Path):
    image = tmp_path / "x.png"
    from factories import make_image

    make_image(64, 64).save(image)
    path = make("os_system", tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "classes": ["a", "b", "c", "d"], "input": {"size": 64},
        "models": {"resnet50": {"checkpoint": path.name}}}))
    done = subprocess.run([sys.executable, "-m", "mushcam", "explain", str(image), "--backbone", "resnet50",
                           "--manifest", str(tmp_path), "--out", str(tmp_path / "out")],
                          cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "would call" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "pwned.txt").exists()


PEAK_SCRIPT = """
import sys, torch, torchvision
from mushcam.memory import peak_rss_bytes, current_rss_bytes, reset_peak_rss
from mushcam.models import CheckpointError, load_checkpoint
reset_peak_rss()
base = current_rss_bytes()
try:
    load_checkpoint(sys.argv[1], "resnet18")
except CheckpointError as exc:
    print("refused:", exc, file=sys.stderr)
print((peak_rss_bytes() - base) / 2**20)
"""


def test_zip_bomb_is_refused_before_it_inflates(tmp_path: Path):
    path = make("zip_bomb", tmp_path)
    assert path.stat().st_size < 2 << 20  # 1.5 MB on disk, 1.5 GiB declared
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert "looks like a zip bomb" in done.stderr, done.stderr
    assert "1.5 GB of data in a 1.5 MB file" in done.stderr
    assert float(done.stdout.strip()) < 64  # MB above the process's size before the call


def test_a_genuine_deflated_checkpoint_still_loads(tmp_path: Path):
    """Re-zipped with compression (some tools do): within the inflation bound, it loads."""
    import zipfile

    torch.save(resnet18_state(), tmp_path / "plain.pt")
    with (
        zipfile.ZipFile(tmp_path / "plain.pt") as src,
        zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    model = load_checkpoint(tmp_path / "deflated.pt", "resnet18").model
    assert isinstance(model, nn.Module) and model.fc.out_features == 4
