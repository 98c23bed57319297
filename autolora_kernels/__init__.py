"""Kernels for the AutoLoRA projection. Importable without a GPU; knows nothing of models.

`autolora_linear` is the one entry point: it validates its inputs and computes
y = x W0^T + b + s * ((x_a V^T) * softmax(beta)) U^T (see reference.py for the math).

Importing registers the custom ops autolora::fused_linear and autolora::fused_linear_backward
(fused_linear.py); triton itself is imported only on first use of the Triton path.
"""

from autolora_kernels.checks import check_autolora_inputs, check_x
from autolora_kernels.fused_linear import autolora_linear, layer_backend
from autolora_kernels.reference import (
    autolora_linear_backward_reference,
    autolora_linear_reference,
    lora_delta_reference,
    selection_weights,
    sliced_linear_reference,
)

__all__ = [
    "autolora_linear",
    "autolora_linear_backward_reference",
    "autolora_linear_reference",
    "check_autolora_inputs",
    "check_x",
    "layer_backend",
    "lora_delta_reference",
    "selection_weights",
    "sliced_linear_reference",
]
