"""Hostile checkpoints, round two (issue 18 §2): each gets one clear line, a correct result or a
documented refusal, from the one checkpoint reader (``mushcam.models.checkpoint`` + ``safety``)
and the one architecture builder (``registry.build_architecture`` + ``options``).

Each case asserts the message, that it is one line with no chained cause (what the CLI and the
pages show), that no warning escapes the reader, and where memory was the problem, the peak.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from hostile_checkpoints import SECRET, make_checkpoint, tiny_state, write_million_safetensors
from project_paths import PROJECT_ROOT

from mushcam.models import CheckpointError, safety
from mushcam.models.checkpoint import find_state_dict, read_checkpoint, read_weights
from mushcam.models.registry import ArchitectureError, build_architecture


def refusal(path: Path) -> str:
    """The one line a checkpoint gets, with no warning escaping and no chained exception."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as error:
            read_weights(path)
    assert not caught, [str(w.message) for w in caught]
    message = str(error.value)
    assert "\n" not in message and error.value.__cause__ is None
    assert "weights_only" not in message and "site-packages" not in message
    return message


CASES = [
    ("empty_dict", r"empty_dict\.pt holds no tensors: it is an empty dict"),
    ("empty_state_dict", r"holds no tensors: its 'state_dict' is an empty dict"),
    ("protocol4", r"saved with pickle protocol 4, which PyTorch's safe \(weights-only\) reader cannot read; save it "
                  r"again with torch\.save"),
    ("protocol4_legacy", r"saved with pickle protocol 4"),
    ("plain_pickle", r"a plain Python pickle \(pickle\.dump\), not a PyTorch checkpoint"),
    ("dev_zero", r"dev_zero\.pt \(a link to /dev/zero\) is a character device, not a checkpoint file"),
    ("proc_self_mem", r"proc_self_mem\.pt \(a link to /proc/\d+/mem\) is a special file of the operating system, "
                      r"not a checkpoint file"),
    ("fifo", r"fifo\.pt is a named pipe \(FIFO\), not a checkpoint file"),
    ("etc_passwd", r"it is a text file, not a PyTorch checkpoint"),
    ("secret_text", r"secret_text\.pt: it is a text file, not a PyTorch checkpoint"),
]


@pytest.mark.parametrize(("kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_round_two_checkpoint_gets_one_clear_line(tmp_path: Path, kind: str, expected: str) -> None:
    import re

    path = make_checkpoint(kind, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    message = refusal(path)
    assert re.search(expected, message), message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside it


def test_a_text_file_is_never_quoted(tmp_path: Path) -> None:
    """/etc/passwd or a file of secrets named as the checkpoint: its kind, never its content."""
    secret = refusal(make_checkpoint("secret_text", tmp_path))
    passwd = refusal(make_checkpoint("etc_passwd", tmp_path))
    assert SECRET not in secret and "password" not in secret and "admin" not in secret
    assert "root" not in passwd and "/bin/" not in passwd
    json_file = tmp_path / "config.pt"
    json_file.write_text('{"token": "abc"}')
    assert "a text file (it looks like JSON), not a PyTorch checkpoint" in refusal(json_file)


def test_a_broken_link_and_a_missing_file_say_which(tmp_path: Path) -> None:
    (tmp_path / "gone.pt").symlink_to(tmp_path / "nowhere.pt")
    assert f"is a link to {tmp_path / 'nowhere.pt'}, which does not exist" in refusal(tmp_path / "gone.pt")
    assert "checkpoint not found" in refusal(tmp_path / "never.pt")
    assert "is a character device" in refusal(Path("/dev/null"))


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_weights_are_checked_and_computed_in_float32(tmp_path: Path, dtype: str) -> None:
    path = make_checkpoint(dtype, tmp_path)
    state, where = read_weights(path)
    expected = {k: v.to(getattr(torch, dtype)).float() for k, v in tiny_state().items()}
    assert where == "" and set(state) == set(expected)
    for key, value in state.items():
        assert value.dtype == torch.float32
        assert torch.equal(value, expected[key])  # the float8 values, exactly, in float32


def test_float8_nan_is_found_not_a_crash(tmp_path: Path) -> None:
    state = {k: v.to(torch.float8_e4m3fn) for k, v in tiny_state().items()}
    weight = state["fc.weight"].float()
    weight[0, :2] = float("nan")
    state["fc.weight"] = weight.to(torch.float8_e4m3fn)
    torch.save(state, tmp_path / "nan8.pt")
    assert "has 1 tensors whose values are not finite (NaN or infinite): fc.weight (2 of 32)" in refusal(
        tmp_path / "nan8.pt")


def test_a_float8_model_loads_and_says_so(tmp_path: Path) -> None:
    import torchvision

    from mushcam.models import load_checkpoint

    state = torchvision.models.mobilenet_v3_small(num_classes=4).state_dict()
    torch.save({k: (v.to(torch.float8_e5m2) if v.is_floating_point() else v) for k, v in state.items()},
               tmp_path / "f8.pt")
    found = load_checkpoint(tmp_path / "f8.pt", "mobilenet_v3_small", num_classes=4)
    assert "float8_e5m2 weights computed in float32" in found.how
    assert found.model.classifier[3].weight.dtype == torch.float32


def test_safetensors_tensor_count_is_refused_from_the_header(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "many.safetensors"
    save_file({f"t{i}": torch.zeros(1) for i in range(11)}, str(path))
    assert safety.safetensors_problem(path, max_tensors=11) is None
    assert safety.safetensors_problem(path, max_tensors=10) == (
        "it holds 11 tensors (the limit is 10); an image classifier holds a few thousand at most, so this is not one")
    assert safety.safetensors_problem(path, max_header=64).startswith("its safetensors header is ")


def test_a_million_tiny_safetensors_are_refused_at_once_in_bounded_memory(tmp_path: Path) -> None:
    """Before: 45 s and 2.2 GB, then a message. Now refused from the 8-byte header length."""
    path = write_million_safetensors(tmp_path / "million.safetensors")
    script = (
        "import sys, time, resource\n"
        "from mushcam.models.checkpoint import read_checkpoint, CheckpointError\n"
        "from mushcam.memory import peak_rss_bytes, current_rss_bytes, reset_peak_rss\n"
        "reset_peak_rss(); base = current_rss_bytes(); start = time.perf_counter()\n"
        "try:\n    read_checkpoint(sys.argv[1])\nexcept CheckpointError as exc:\n    print(exc, file=sys.stderr)\n"
        "print(time.perf_counter() - start, (peak_rss_bytes() - base) / 2**20)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert "its safetensors header is 67.1 MB (the limit is 8.0 MB)" in done.stderr, done.stderr
    seconds, megabytes = map(float, done.stdout.split())
    assert seconds < 1.0 and megabytes < 16


def test_a_zip_with_too_many_entries_is_refused_before_zipfile_reads_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_checkpoint("tiny", tmp_path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert safety.zip_entry_count(path) == len(archive.infolist())
    monkeypatch.setattr(safety, "MAX_TENSORS", 2)
    message = refusal(path)
    assert f"its archive holds {safety.zip_entry_count(path)} entries (the limit is 2 tensors)" in message


def test_read_checkpoint_of_a_growing_special_file_never_opens_it(tmp_path: Path) -> None:
    """A FIFO would block ``open`` forever: the type is judged from ``stat`` first."""
    path = make_checkpoint("fifo", tmp_path)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="named pipe"):
        read_checkpoint(path)
    assert time.perf_counter() - start < 1.0


def test_a_state_dict_with_only_metadata_still_names_the_entry() -> None:
    with pytest.raises(CheckpointError, match="entry 'epoch' is a int, not a tensor"):
        find_state_dict({"epoch": 3}, "x.pt")


# ------------------------------------------------------------------ kwargs of an architecture


KWARGS_CASES = [
    ("regnet_y_400mf", {"bogus": 1}, r"regnet_y_400mf does not accept kwargs 'bogus'; it accepts .*stem_width"),
    ("mobilenet_v3_large", {"bogus": 1},  # MobileNetV3 takes **kwargs and used to ignore it silently
     r"mobilenet_v3_large does not accept kwargs 'bogus'; it accepts .*width_mult"),
    ("resnet18", {"bogus": 1, "groups": 1},
     r"resnet18 does not accept kwargs 'bogus'; it accepts .*zero_init_residual"),
    ("mobilenet_v3_large", {"width_mult": 1e300},
     r"kwargs width_mult = 1e\+300 is not a plausible architecture setting \(numbers in kwargs must be finite and "
     r"within ±1,000,000\)"),
    ("regnet_y_400mf", {"stem_width": 10**400}, r"kwargs stem_width = a 401-digit number is not a plausible"),
    ("vit_b_16", {"image_size": 10**9}, r"kwargs image_size = a 10-digit number"),
    ("resnet18", {"replace_stride_with_dilation": [False, 1e300, True]},
     r"kwargs replace_stride_with_dilation\[1\] = 1e\+300"),
    ("regnet_y_400mf", {"num_classes": 3}, r"kwargs 'num_classes' may not be set: the class count comes from"),
    ("efficientnet_b0", {"dropout": "x"},
     r"cannot build efficientnet_b0 with kwargs \{\"dropout\": \"x\"\}: TypeError: '<' not supported"),
    ("wide_resnet50_2", {"width_per_group": 64},
     r"cannot build wide_resnet50_2 with kwargs \{\"width_per_group\": 64\}: ValueError: The parameter"),
]


@pytest.mark.parametrize(("arch", "kwargs", "expected"), KWARGS_CASES,
                         ids=[f"{a}-{next(iter(k))}" for a, k, _ in KWARGS_CASES])
def test_kwargs_an_architecture_cannot_take_are_one_line(arch: str, kwargs: dict, expected: str) -> None:
    import re

    for device in ("meta", "cpu"):
        with pytest.raises(ArchitectureError) as error:
            build_architecture(arch, 4, kwargs, device=device)
        message = str(error.value)
        assert "\n" not in message and "frame #" not in message and error.value.__cause__ is None
        assert re.search(expected, message), message


def test_a_timm_model_with_a_wrong_key_names_what_it_takes() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ArchitectureError) as error:
        build_architecture("timm:resnet18", 4, {"bogus": 1}, device="meta")
    message = str(error.value)
    assert message.startswith('cannot build timm:resnet18 with kwargs {"bogus": 1}: TypeError: ')
    assert "it accepts in_chans, output_stride" in message and "\n" not in message


@pytest.mark.parametrize(("arch", "kwargs"), [
    ("vit_b_16", {"image_size": 64}), ("mobilenet_v3_large", {"width_mult": 0.5, "dropout": 0.1}),
    ("efficientnet_b0", {"dropout": 0.3, "stochastic_depth_prob": 0.1}), ("regnet_y_400mf", {"stem_width": 16}),
    ("resnet50", {"replace_stride_with_dilation": [False, True, True]}), ("densenet121", {"memory_efficient": True}),
])
def test_good_kwargs_still_build(arch: str, kwargs: dict) -> None:
    model = build_architecture(arch, 4, kwargs, device="meta")
    assert isinstance(model, torch.nn.Module)
