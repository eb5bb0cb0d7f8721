"""What this machine computes on: the accelerator and devices that training or embedding asks for,
refused in one line when the machine lacks them (before anything is written), and what `auto`
stands for here.

Lightning and torch would find out too, but only once training starts (after the run folder has
changed) and with a traceback. torch is imported inside the functions, so gtok.options and the
workflow, which check what can be known without the machine, stay without it.
"""

from __future__ import annotations

import os
from typing import Any

from gtok.errors import GtokError


def accelerator_kind(accelerator: str) -> str:
    """'cpu', 'cuda' or 'mps': what the `trainer.accelerator` option (auto, cpu, gpu, cuda, mps)
    means on this machine; a GPU it does not have is refused."""
    import torch

    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if accelerator == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("gpu", "cuda") and cuda:
        return "cuda"
    if accelerator in ("gpu", "mps") and mps:
        return "mps"
    raise GtokError(f"trainer.accelerator is {accelerator}, but this machine has no GPU that torch can use "
                    f"({_gpus_seen()}); train with accelerator cpu (or auto), or where a GPU is.")


def devices_per_node(devices: Any, kind: str) -> int:
    """How many processes train on this node: the `trainer.devices` option (already of a valid
    shape, gtok.options.devices_problem) against the devices of `kind` this machine has."""
    if kind == "cpu":
        if devices == "auto":
            return 1
        # the machine's cores, not this process's share: under SLURM each task may hold one of them.
        # A few processes more than cores still train (they take turns: the elastic-resume tests
        # run 3 on 2); far more crowd out the machine's memory, each with its own torch and model.
        if isinstance(devices, int) and devices > 2 * (cores := os.cpu_count() or 1):
            raise GtokError(f"trainer.devices is {devices}, but this machine has {cores} CPU core(s); more than twice "
                            "as many CPU processes only take turns and crowd its memory (each holds torch and the "
                            f"model): give at most {2 * cores}, or train with accelerator gpu.")
        if isinstance(devices, int) and devices >= 1:
            return devices
        raise GtokError(f"trainer.devices is {devices!r}, but training runs on the CPU, which has no device indices "
                        "(nor 'every GPU', -1): give a number of CPU processes, like 2, or train with accelerator gpu.")
    count = _device_count(kind)
    if devices in ("auto", -1):
        return count
    wanted = devices if isinstance(devices, list) else list(range(devices))
    if max(wanted) >= count:
        which = f"device {max(wanted)}" if isinstance(devices, list) else f"{devices} devices"
        raise GtokError(f"trainer.devices is {devices!r}, but this machine has {count} {kind} device(s), not {which}; "
                        f"give at most {count} (or indices below {count}).")
    return len(wanted)


def resolved(precision: str, deterministic: Any, kind: str) -> dict[str, Any]:
    """The precision and determinism that `auto` stands for on a machine of `kind`: bf16 on a GPU
    that has it and speed over bit-exactness there; 32 bits and bit-exact resumes elsewhere."""
    import torch

    gpu = kind == "cuda"
    if precision == "auto":
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    return {"precision": precision, "deterministic": (not gpu) if deterministic == "auto" else deterministic}


def torch_device(name: str | None, option: str = "--device") -> str | None:
    """`name` once it is known to be a device this machine has (None: the default, a GPU when
    there is one); `option` is how the user gave it (`gtok embed --device`, or `device` in Python)."""
    if name is None:
        return None
    import torch

    flag = option.startswith("-")
    quoted, given = (f"{option} {name!r}", f"{option} {name}") if flag else (f"{option}={name!r}",) * 2
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise GtokError(f"{quoted} is not a device; give cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise GtokError(f"{quoted}: gtok embeds on cpu, cuda or mps, not {device.type}.")
    if device.type != "cpu":
        count = _device_count(device.type)
        if count == 0:
            cpu = f"{option} cpu" if flag else f"{option}='cpu'"
            raise GtokError(f"{given}: this machine has no GPU that torch can use ({_gpus_seen()}); "
                            f"use {cpu}, or leave {option} out.")
        if (device.index or 0) >= count:
            raise GtokError(f"{given}: this machine has {count} {device.type} device(s), numbered from 0.")
    return name


def _device_count(kind: str) -> int:
    import torch

    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return int(torch.backends.mps.is_available())


def _gpus_seen() -> str:
    import torch

    if torch.version.cuda is None:
        return "this torch is built without CUDA"
    return "torch.cuda.is_available() is false"
