"""mushcam.device: one reading of --device for every job; mushcam.toxicity: the values as strings."""

from __future__ import annotations

import json

import pytest
import torch

from mushcam import train
from mushcam.device import DeviceError, resolve_device
from mushcam.exceptions import MushcamError
from mushcam.manifest import TOXICITIES
from mushcam.toxicity import Toxicity


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("").type == resolve_device("auto").type


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", "cuda:-1", "mps"])
def test_unknown_device_says_what_to_pass(name: str) -> None:
    with pytest.raises(DeviceError, match=r"--device must be auto, cpu, cuda or cuda:N"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused_with_what_to_use(name: str) -> None:
    with pytest.raises(DeviceError, match=r"no CUDA GPU .*use --device auto or cpu"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_index_is_accepted_and_checked() -> None:
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="there are only"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_train_uses_the_one_resolver() -> None:
    assert train.resolve_device is resolve_device
    assert issubclass(DeviceError, MushcamError)


def test_toxicity_members_are_the_stored_strings() -> None:
    assert TOXICITIES == ("poisonous", "edible", "inedible", "mixed", "unknown")
    assert Toxicity.POISONOUS == "poisonous" and f"{Toxicity.EDIBLE}" == "edible" and str(Toxicity.MIXED) == "mixed"
    assert json.dumps({"toxicity": Toxicity.INEDIBLE}) == '{"toxicity": "inedible"}'
    assert Toxicity("unknown") is Toxicity.UNKNOWN
    assert train.POISONOUS == "poisonous" and train.EDIBLE == "edible"
