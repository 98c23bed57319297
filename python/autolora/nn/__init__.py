"""The layers: the AutoLoRA adapter and the two wrappers that put it beside a frozen base layer.

adapter.py (U, V, beta and alpha) -> layer.py (a Linear/Conv1D with one adapter, fused matmul)
and sliced.py (a fused q/k/v projection with one adapter per slice); base_layer.py reads the
frozen base (nn.Linear or GPT-2's transposed Conv1D).
"""

from autolora.nn.adapter import AutoLoraAdapter
from autolora.nn.layer import FusedAutoLoraLinear
from autolora.nn.sliced import SlicedAutoLoraLinear

__all__ = ["AutoLoraAdapter", "FusedAutoLoraLinear", "SlicedAutoLoraLinear"]
