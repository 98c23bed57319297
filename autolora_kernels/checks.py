"""Input validation shared by every path of the fused projection: errors name the argument."""

from __future__ import annotations

import torch

# The largest rank the Triton kernels take (one register tile); larger ranks use the reference path.
MAX_RANK = 64


def autocast_enabled(device_type: str) -> bool:
    """torch.is_autocast_enabled for the device, False for devices autocast does not know (meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def check_x(x: torch.Tensor, in_features: int, weight: torch.Tensor) -> None:
    """x must be (..., in_features) with the weight's dtype and device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != in_features:
        raise ValueError(
            f"x: expected last dimension {in_features} (the layer's in_features), got shape {tuple(x.shape)}"
        )
    if x.device != weight.device:
        raise ValueError(f"x: on device {x.device}, but the layer is on {weight.device}")
    if x.dtype != weight.dtype and not autocast_enabled(x.device.type):
        raise TypeError(f"x: dtype {x.dtype} differs from the layer's dtype {weight.dtype}")


def check_autolora_inputs(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    U: torch.Tensor,
    V: torch.Tensor,
    beta: torch.Tensor | None,
    conv1d: bool,
    x_adapter: torch.Tensor | None = None,
) -> None:
    """Raise ValueError/TypeError before any launch if shapes, dtypes or devices disagree."""
    if weight.dim() != 2:
        raise ValueError(f"weight: expected a 2-D tensor, got shape {tuple(weight.shape)}")
    n_out, k_in = (weight.shape[1], weight.shape[0]) if conv1d else tuple(weight.shape)
    check_x(x, k_in, weight)
    if U.dim() != 2 or V.dim() != 2 or U.shape[1] != V.shape[0]:
        raise ValueError(f"U, V: expected (N, r) and (r, K), got {tuple(U.shape)} and {tuple(V.shape)}")
    if U.shape[0] != n_out or V.shape[1] != k_in:
        raise ValueError(
            f"U, V: expected ({n_out}, r) and (r, {k_in}) for this weight, "
            f"got {tuple(U.shape)} and {tuple(V.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"bias: expected shape ({n_out},), got {tuple(bias.shape)}")
    if beta is not None and tuple(beta.shape) != (U.shape[1],):
        raise ValueError(f"beta: expected shape ({U.shape[1]},), got {tuple(beta.shape)}")
    for name, t in (("U", U), ("V", V), ("bias", bias)):
        if t is not None and (t.device != weight.device or t.dtype != weight.dtype):
            raise TypeError(
                f"{name}: expected {weight.dtype} on {weight.device}, got {t.dtype} on {t.device}"
            )
    if beta is not None and (beta.device != weight.device or not beta.is_floating_point()):
        raise TypeError(
            f"beta: expected a floating tensor on {weight.device}, got {beta.dtype} on {beta.device}"
        )
    if x_adapter is not None:
        if not isinstance(x_adapter, torch.Tensor) or x_adapter.shape != x.shape:
            got = tuple(x_adapter.shape) if isinstance(x_adapter, torch.Tensor) else type(x_adapter).__name__
            raise ValueError(f"x_adapter: expected the shape of x {tuple(x.shape)}, got {got}")
        if x_adapter.device != x.device or x_adapter.dtype != x.dtype:
            raise TypeError(
                f"x_adapter: expected {x.dtype} on {x.device}, got {x_adapter.dtype} on {x_adapter.device}"
            )
