"""The device a run asks for (`device`: "auto", "cpu", "cuda:1", ...), checked against this machine.

torch.device() accepts "cuda" on a machine without CUDA; the failure comes later, at the first
`.to(device)`, as "AssertionError: Torch not compiled with CUDA enabled". resolve_device fails first,
with the value and what this machine has.
"""

from __future__ import annotations

import torch

from autolora.errors import InputError

# Accelerator types a run can use, each with its torch module (is_available, device_count).
ACCELERATORS = ("cuda", "mps", "xpu")


def _module(kind: str):
    if kind == "mps":
        return torch.backends.mps
    return getattr(torch, kind, None)


def _count(kind: str) -> int:
    module = _module(kind)
    if module is None or not module.is_available():
        return 0
    return module.device_count() if hasattr(module, "device_count") else 1


def available_devices() -> list[str]:
    """The devices this machine can run on: "cpu", then "cuda:0".. (or "mps", "xpu:0"..)."""
    out = ["cpu"]
    for kind in ACCELERATORS:
        n = _count(kind)
        out += [kind] if kind == "mps" and n else [f"{kind}:{i}" for i in range(n)]
    return out


def resolve_device(spec: str | torch.device) -> torch.device:
    """The torch.device for `spec`, checked against this machine before anything is moved there.

    Args:
        spec: "auto" (CUDA when available, else the CPU), or a torch device: "cpu", "cuda",
            "cuda:1", "mps", "xpu:0".

    Returns:
        The device ("auto" resolved; an index kept as given).

    Raises:
        InputError: `device` names no device type, a type autolora does not run on (xla, meta), or
            one this machine lacks (CUDA absent, an index past the last GPU). The message lists the
            devices available here.
    """
    if spec == "auto":
        return torch.device("cuda" if _count("cuda") else "cpu")
    here = f"available here: {', '.join(available_devices())}"  # every message ends with it
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise InputError("device", f"{spec!r} is not a device; expected 'auto' or a device {here}") from None
    if device.type == "cpu":
        return device
    if device.type not in ACCELERATORS:
        raise InputError("device", f"{spec!r}: autolora does not run on {device.type!r} devices; {here}")
    count = _count(device.type)
    if count == 0:
        raise InputError(
            "device", f"{spec!r}: no {device.type} device on this machine (or in this torch build); {here}"
        )
    if device.index is not None and device.index >= count:
        raise InputError(
            "device", f"{spec!r}: there is no {device.type} device {device.index} ({count} found); {here}"
        )
    return device
