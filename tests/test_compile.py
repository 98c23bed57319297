"""torch.compile(fullgraph=True) through FusedAutoLoraLinear, and torch.library.opcheck of the ops.

fullgraph=True turns any graph break into an error, so these tests pass only if the custom ops, their
fake implementations and their registered autograd let Dynamo and AOTAutograd trace the layer.
"""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_adapters
from torch import nn
from transformers.pytorch_utils import Conv1D

import autolora_kernels  # noqa: F401  (registers torch.ops.autolora.*)
from autolora import FusedAutoLoraLinear, SlicedAutoLoraLinear


class Tiny(nn.Module):
    """Two adapted projections (nn.Linear in search mode, Conv1D in fixed mode) around a GELU."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.up = FusedAutoLoraLinear(nn.Linear(16, 24), rank=4, dropout=dropout)
        self.down = FusedAutoLoraLinear(Conv1D(8, 24), rank=3, mode="fixed", dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


class TinyAttention(nn.Module):
    """GPT-2's c_attn in small: a Conv1D 16 -> [q | k | v] of 8 each, adapters on q and v."""

    def __init__(self) -> None:
        super().__init__()
        self.c_attn = SlicedAutoLoraLinear(Conv1D(24, 16), rank=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(self.c_attn(x))


def loss_and_grads(model: nn.Module, x: torch.Tensor):
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    y = model(x)
    y.square().mean().backward()
    params = [p.grad for p in model.parameters() if p.requires_grad]
    return y.detach(), x.grad, params


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_backward(backend):
    torch._dynamo.reset()
    model = Tiny()
    randomize_adapters(model)
    x = torch.randn(2, 5, 16)
    want = loss_and_grads(model, x)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    got = loss_and_grads(compiled, x)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert len(got[2]) == len(want[2]) == 5  # up: U, V, beta; down: U, V (fixed mode)
    for g, w in zip(got[2], want[2], strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.slow
def test_compile_fullgraph_with_dropout():
    """Training mode with dropout passes x_adapter separately; aot_eager replays the same RNG calls in
    the same order as eager, so with one seed the masks, outputs and gradients agree exactly."""
    torch._dynamo.reset()
    model = Tiny(dropout=0.3).train()
    randomize_adapters(model)
    x = torch.randn(2, 5, 16)
    torch.manual_seed(7)
    want = loss_and_grads(model, x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.manual_seed(7)
    got = loss_and_grads(compiled, x)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    for g, w in zip(got[2], want[2], strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_sliced(backend):
    """The sliced layer (stacking of its adapters included) traces into one graph around the op."""
    torch._dynamo.reset()
    model = TinyAttention()
    randomize_adapters(model)
    x = torch.randn(2, 5, 16)
    want = loss_and_grads(model, x)
    got = loss_and_grads(torch.compile(model, fullgraph=True, backend=backend), x)
    assert len(got[2]) == len(want[2]) == 6  # q and v: U, V, beta each
    for g, w in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]], strict=True):
        torch.testing.assert_close(g, w)


def _op_args(beta: bool, x_adapter: bool, conv1d: bool):
    r = 3
    x = torch.randn(6, 5, requires_grad=True)
    w = torch.randn(5, 7) if conv1d else torch.randn(7, 5)
    xa = (x.detach() * 2).requires_grad_() if x_adapter else None
    b = torch.randn(r, requires_grad=True) if beta else None
    U, V = torch.randn(7, r, requires_grad=True), torch.randn(r, 5, requires_grad=True)
    return (x, w, torch.randn(7), U, V, b, 2.0, conv1d, xa)


@pytest.mark.parametrize("beta, x_adapter, conv1d", [(True, False, False), (False, True, True)])
def test_opcheck_forward(beta, x_adapter, conv1d):
    torch.library.opcheck(torch.ops.autolora.fused_linear.default, _op_args(beta, x_adapter, conv1d))


def test_opcheck_backward():
    x, w, _, U, V, beta, s, conv1d, _ = _op_args(True, False, False)
    t = (x @ V.t()).detach().float()
    args = (torch.randn(6, 7), x.detach(), w, U.detach(), V.detach(), beta.detach(), t, s, conv1d)
    torch.library.opcheck(torch.ops.autolora.fused_linear_backward.default, args + (True, False, False))


def test_opcheck_forward_as_the_sliced_layer_calls_it():
    """The sliced layer's call: fixed mode (beta None, s = 1), a block-diagonal U with zero rows for
    k, a Conv1D weight."""
    layer = SlicedAutoLoraLinear(Conv1D(24, 5), rank=3)
    randomize_adapters(layer)
    U, V = (t.detach().requires_grad_() for t in layer.stacked())
    w, b = layer.base_layer.weight, layer.base_layer.bias
    args = (torch.randn(6, 5, requires_grad=True), w.detach(), b.detach(), U, V, None, 1.0, True, None)
    torch.library.opcheck(torch.ops.autolora.fused_linear.default, args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_compile_fullgraph_cuda_triton_path(dtype):
    """On the GPU the compiled graph calls the Triton kernels. Inductor may fuse the GELU and its
    backward with one rounding fewer or more than eager, so compare at the dtype's default tolerance."""
    torch._dynamo.reset()
    model = Tiny().to("cuda", dtype)
    randomize_adapters(model)
    x = torch.randn(4, 33, 16, device="cuda", dtype=dtype)
    want = loss_and_grads(model, x)
    got = loss_and_grads(torch.compile(model, fullgraph=True), x)
    for g, w in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]], strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compile_fullgraph_cuda_sliced():
    """The sliced layer compiled on the GPU (inductor), against eager, bf16."""
    torch._dynamo.reset()
    model = TinyAttention().to("cuda", torch.bfloat16)
    randomize_adapters(model)
    x = torch.randn(4, 33, 16, device="cuda", dtype=torch.bfloat16)
    want = loss_and_grads(model, x)
    got = loss_and_grads(torch.compile(model, fullgraph=True), x)
    for g, w in zip([got[0], got[1], *got[2]], [want[0], want[1], *want[2]], strict=True):
        torch.testing.assert_close(g, w)
