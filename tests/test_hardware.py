"""gtok.training.hardware: an accelerator or device this machine does not have is one line, before anything
runs, and `auto` resolves to what the machine has. The refusals of a GPU are checked where there is
none (CPU-only machines, like CI); on a GPU machine those tests are skipped."""

from __future__ import annotations

import os

import pytest
import torch

from gtok.errors import GtokError
from gtok.training.hardware import accelerator_kind, devices_per_node, resolved, torch_device

NO_GPU = pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                            reason="this machine has a GPU: its refusal cannot be seen here")


@NO_GPU
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_this_machine_lacks_is_refused(accelerator):
    with pytest.raises(GtokError, match=f"trainer.accelerator is {accelerator}, but this machine has no GPU"):
        accelerator_kind(accelerator)
    assert accelerator_kind("auto") == accelerator_kind("cpu") == "cpu"


@pytest.mark.parametrize("devices", [[0, 1], [0], -1])
def test_device_indices_or_every_gpu_are_refused_on_the_cpu(devices):
    with pytest.raises(GtokError, match=rf"trainer.devices is {devices!r}.*training runs on the CPU".replace("[", r"\[")):
        devices_per_node(devices, "cpu")


def test_cpu_processes_are_counted_up_to_twice_the_machines_cores():
    cores = os.cpu_count()
    assert [devices_per_node(d, "cpu") for d in ("auto", 1, cores + 1, 2 * cores)] == [1, 1, cores + 1, 2 * cores]
    with pytest.raises(GtokError, match=f"trainer.devices is {2 * cores + 1}, but this machine has {cores} CPU core"):
        devices_per_node(2 * cores + 1, "cpu")  # 99 processes on 2 cores once hung in their start-up


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpus_beyond_those_of_the_machine_are_refused():
    count = torch.cuda.device_count()
    assert devices_per_node("auto", "cuda") == devices_per_node(-1, "cuda") == count
    assert devices_per_node([count - 1], "cuda") == 1
    with pytest.raises(GtokError, match=f"this machine has {count} cuda device"):
        devices_per_node(count + 1, "cuda")
    with pytest.raises(GtokError, match=f"not device {count}"):
        devices_per_node([count], "cuda")


def test_auto_on_the_cpu_is_32_bits_and_deterministic():
    assert resolved("auto", "auto", "cpu") == {"precision": "32-true", "deterministic": True}
    assert resolved("bf16-mixed", False, "cpu") == {"precision": "bf16-mixed", "deterministic": False}


@NO_GPU
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "mps"])
def test_an_embedding_device_this_machine_lacks_is_refused(name):
    with pytest.raises(GtokError, match=f"--device {name}: this machine has no GPU"):
        torch_device(name)


def test_an_embedding_device_must_be_a_device():
    assert torch_device(None) is None and torch_device("cpu") == "cpu"
    with pytest.raises(GtokError, match="--device 'banana' is not a device"):
        torch_device("banana")
    with pytest.raises(GtokError, match="gtok embeds on cpu, cuda or mps, not meta"):
        torch_device("meta")
