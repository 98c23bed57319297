"""Kernels for the AutoLoRA projection. Importable without a GPU; knows nothing of models.

`autolora_linear` is the one entry point: it validates its inputs and computes
y = x W0^T + b + s * ((x_a V^T) * softmax(beta)) U^T (see reference.py for the math).
"""

from autolora_kernels.checks import check_autolora_inputs, check_x
from autolora_kernels.reference import autolora_linear_reference, lora_delta_reference, selection_weights


def autolora_linear(x, weight, bias, U, V, beta, scaling, conv1d=False, x_adapter=None):
    """Fused AutoLoRA projection; shapes as in `autolora_linear_reference`."""
    check_autolora_inputs(x, weight, bias, U, V, beta, conv1d)
    return autolora_linear_reference(x, weight, bias, U, V, beta, scaling, conv1d, x_adapter)


__all__ = [
    "autolora_linear",
    "autolora_linear_reference",
    "check_autolora_inputs",
    "check_x",
    "lora_delta_reference",
    "selection_weights",
]
