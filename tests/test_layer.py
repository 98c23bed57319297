"""FusedAutoLoraLinear against the explicit formula, autograd, PEFT's LoRA, merge/unmerge, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_adapters
from torch import nn
from transformers.pytorch_utils import Conv1D

from autolora import FusedAutoLoraLinear


def explicit(layer: FusedAutoLoraLinear, x: torch.Tensor) -> torch.Tensor:
    """x W0^T + b + s * x (U diag(alpha) V)^T, written out with W0 as out x in."""
    base = layer.base_layer
    w0 = base.weight.t() if isinstance(base, Conv1D) else base.weight
    alpha = torch.softmax(layer.beta, 0) if layer.beta is not None else torch.ones(layer.rank)
    delta = layer.U @ torch.diag(alpha.to(x.dtype)) @ layer.V
    y = x @ w0.t() + layer.scaling * x @ delta.t()
    return y + base.bias if base.bias is not None else y


def make_base(kind: str, k_in: int, n_out: int, bias: bool = True, dtype=torch.float32) -> nn.Module:
    if kind == "linear":
        return nn.Linear(k_in, n_out, bias=bias, dtype=dtype)
    conv = Conv1D(n_out, k_in).to(dtype)
    if not bias:
        conv.bias = None  # Conv1D always has a bias; exercise the None path through the layer
    return conv


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rank", [1, 3, 8])
def test_output_matches_explicit_formula(kind, bias, rank):
    base = make_base(kind, 23, 17, bias)
    layer = FusedAutoLoraLinear(base, rank=rank, lora_alpha=16)
    randomize_adapters(layer)
    x = torch.randn(2, 5, 23)
    expected, got = explicit(layer, x), layer(x)
    assert layer.scaling == 16 / rank
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_conv1d_weight_is_shared_not_copied():
    base = Conv1D(12, 7)
    layer = FusedAutoLoraLinear.from_layer(base)
    assert layer.base_layer.weight.data_ptr() == base.weight.data_ptr()
    assert layer.in_features == 7 and layer.out_features == 12


def test_init_matches_spec():
    layer = FusedAutoLoraLinear(nn.Linear(10, 6))
    assert layer.U.shape == (6, 8) and torch.all(layer.U == 0)
    assert layer.V.shape == (8, 10) and layer.V.abs().sum() > 0
    assert layer.beta.shape == (8,) and torch.all(layer.beta == 0)
    torch.testing.assert_close(layer.alpha(), torch.full((8,), 1 / 8))
    assert not layer.base_layer.weight.requires_grad and not layer.base_layer.bias.requires_grad


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_gradcheck_float64(kind):
    base = make_base(kind, 6, 5, dtype=torch.float64)
    layer = FusedAutoLoraLinear(base, rank=3).double()
    randomize_adapters(layer)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w, b = base.weight, base.bias

    def f(x, U, V, beta):
        from autolora_kernels import autolora_linear

        return autolora_linear(x, w, b, U, V, beta, layer.scaling, conv1d=kind == "conv1d")

    assert torch.autograd.gradcheck(f, (x, layer.U, layer.V, layer.beta))


def test_gradients_reach_only_adapter():
    layer = FusedAutoLoraLinear(nn.Linear(6, 5), rank=4)
    randomize_adapters(layer)
    layer(torch.randn(3, 6)).sum().backward()
    assert all(p.grad is not None for p in (layer.U, layer.V, layer.beta))
    assert layer.base_layer.weight.grad is None


def test_fixed_mode_equals_peft_lora():
    from peft import LoraConfig, get_peft_model

    base = nn.Linear(20, 12)
    layer = FusedAutoLoraLinear(base, rank=4, lora_alpha=16, mode="fixed")
    assert layer.beta is None and layer.scaling == 4.0
    randomize_adapters(layer)
    holder = nn.Sequential()
    holder.add_module("proj", nn.Linear(20, 12))
    holder.proj.load_state_dict(base.state_dict())
    peft = get_peft_model(holder, LoraConfig(r=4, lora_alpha=16, target_modules=["proj"]))
    lora = peft.base_model.model.proj
    with torch.no_grad():
        lora.lora_A["default"].weight.copy_(layer.V)
        lora.lora_B["default"].weight.copy_(layer.U)
    x = torch.randn(7, 20)
    torch.testing.assert_close(layer(x), peft(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
def test_merge_and_unmerge(kind):
    base = make_base(kind, 16, 24)
    w0 = base.weight.detach().clone()
    layer = FusedAutoLoraLinear(base, rank=5)
    randomize_adapters(layer, scale=0.5)
    x = torch.randn(9, 16)
    unmerged = layer(x)
    layer.merge()
    assert layer.merged and not torch.equal(base.weight, w0)
    # One fp32 rounding of W0 + Delta per weight, summed over K=16 terms.
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "make_x, err, words",
    [
        (lambda: torch.randn(3, 11), ValueError, "x: expected last dimension 10"),
        (lambda: torch.randn(3, 10, dtype=torch.float64), TypeError, "x: dtype torch.float64"),
        (lambda: torch.randn(3, 10, device="meta"), ValueError, "x: on device meta"),
    ],
)
def test_bad_x_is_rejected(make_x, err, words):
    layer = FusedAutoLoraLinear(nn.Linear(10, 4))
    with pytest.raises(err, match=words):
        layer(make_x())
    layer.merge()
    with pytest.raises(err, match=words):
        layer(make_x())


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rank": 0}, "rank: expected an integer >= 1"),
        ({"rank": -2}, "rank"),
        ({"mode": "train"}, "mode"),
        ({"dropout": 1.5}, "dropout"),
        ({"lora_alpha": 0}, "lora_alpha"),
    ],
)
def test_bad_arguments_leave_base_untouched(kwargs, words):
    base = nn.Linear(5, 5)
    with pytest.raises(ValueError, match=words):
        FusedAutoLoraLinear(base, **kwargs)
    assert base.weight.requires_grad  # not frozen: nothing happened to it


def test_unsupported_base_type():
    with pytest.raises(TypeError, match="base_layer: unsupported module type Embedding"):
        FusedAutoLoraLinear(nn.Embedding(5, 4))


def test_dropout_only_on_adapter_input():
    layer = FusedAutoLoraLinear(nn.Linear(8, 8), rank=2, dropout=0.5)
    x = torch.randn(4, 8)
    base_out = layer.base_layer(x)
    layer.train()
    torch.testing.assert_close(layer(x), base_out)  # U = 0: dropout cannot touch the base path
    randomize_adapters(layer)
    layer.eval()
    torch.testing.assert_close(layer(x), explicit(layer, x), rtol=1e-5, atol=1e-5)


def test_sigmoid_selection_ablation():
    """alpha = sigmoid(beta) element-wise; kept when alpha >= 1/2, the value at beta = 0."""
    layer = FusedAutoLoraLinear(nn.Linear(9, 7), rank=4, selection="sigmoid")
    randomize_adapters(layer)
    with torch.no_grad():
        layer.beta.copy_(torch.tensor([-1.0, 0.5, 2.0, -0.1]))
    alpha = torch.sigmoid(layer.beta)
    x = torch.randn(5, 9)
    expected = layer.base_layer(x) + layer.scaling * x @ (layer.U @ torch.diag(alpha) @ layer.V).t()
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert layer.selected().tolist() == [False, True, True, False]
    with torch.no_grad():
        layer.beta.fill_(-3.0)
    assert layer.selected_rank() == 1  # never zero components
    layer(x).sum().backward()
    assert layer.beta.grad is not None and layer.beta.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="selection"):
        FusedAutoLoraLinear(nn.Linear(3, 3), selection="relu")
