"""What a step leaves on the device comes to the host in one transfer, at logging steps only: on a
GPU each read waits for the whole queue of kernels."""

from __future__ import annotations

import torch


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the checkpoints written before it stay on disk."""


def to_host(values: list[torch.Tensor | float]) -> list[torch.Tensor]:
    """Tensors (and Python numbers) on the host as fp64, in one device-to-host transfer.

    Args:
        values: tensors of any shape on one device; numbers join them there.

    Returns:
        CPU fp64 tensors of the same shapes, in order.
    """
    if not values:
        return []
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    tensors = [torch.as_tensor(v, dtype=torch.float64, device=device).detach() for v in values]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu()  # one copy, not one per tensor
    parts = flat.split([t.numel() for t in tensors])
    return [part.view(t.shape) for part, t in zip(parts, tensors, strict=True)]
