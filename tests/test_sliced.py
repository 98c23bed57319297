"""SlicedAutoLoraLinear (GPT-2's c_attn, [q | k | v] with adapters on q and v) through one fused call,
against reference.sliced_linear_reference (each adapter added to its own columns of the frozen
projection): output and every gradient.

Each path of the op is checked: the Triton kernels (in Triton's interpreter on the CPU, or on CUDA),
the composite (AUTOLORA_KERNEL=composite) and the reference. Errors are judged against PyTorch's own
in the same dtype (helpers.assert_within_torch_error). Sizes stay tiny: M = 37 tokens, K = 40,
3 slices of 48 give ragged 16 x 32 x 32 blocks in every dimension.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch
from helpers import assert_within_torch_error
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from transformers.pytorch_utils import Conv1D

CUDA = torch.cuda.is_available()
if not CUDA and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.language is imported
DEVICE = "cuda" if CUDA else "cpu"
INTERPRET = os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")
NO_TRITON = importlib.util.find_spec("triton") is None or (not CUDA and not INTERPRET)

from autolora import SlicedAutoLoraLinear  # noqa: E402
from autolora_kernels import composite_linear, sliced_linear_reference  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
K_IN, SLICE = 40, 48


@pytest.fixture
def counted(monkeypatch):
    """Count the calls of the fused launchers and of the composite functions (no test passes on a
    path it did not take); AUTOLORA_* variables start unset."""
    for name in ("AUTOLORA_FORCE_REFERENCE", "AUTOLORA_TRITON_ON_CPU", "AUTOLORA_KERNEL"):
        monkeypatch.delenv(name, raising=False)
    calls = {}

    def count(module, attr, key):
        fn = getattr(module, attr)
        calls[key] = 0

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, attr, wrapper)

    if not NO_TRITON:
        from autolora_kernels import fused_linear_launch

        count(fused_linear_launch, "fused_linear_forward", "fused")
        count(fused_linear_launch, "fused_linear_backward", "fused_bwd")
    count(composite_linear, "composite_linear_forward", "composite")
    count(composite_linear, "composite_linear_backward", "composite_bwd")
    return calls


def take_path(monkeypatch, path: str) -> None:
    if path == "fused":
        if NO_TRITON:
            pytest.skip("triton is not installed, or was imported before TRITON_INTERPRET=1")
        monkeypatch.setenv("AUTOLORA_KERNEL", "fused")
        monkeypatch.setenv("AUTOLORA_TRITON_ON_CPU", "1")
    elif path == "composite":
        monkeypatch.setenv("AUTOLORA_KERNEL", "composite")
    elif CUDA:
        monkeypatch.setenv("AUTOLORA_FORCE_REFERENCE", "1")


def build(
    dtype, kind="conv1d", mode="search", rank=8, selection="softmax", values=None, k_in=K_IN, size=SLICE
):
    """A sliced layer in `dtype` (beta fp32, as the layer keeps it), parameters from `values` or random
    (seeded) with O(1) outputs and U off its zero init, so every term and every gradient is exercised."""
    n = 3 * size
    base = Conv1D(n, k_in) if kind == "conv1d" else nn.Linear(k_in, n)
    layer = SlicedAutoLoraLinear(base.to(DEVICE, dtype), rank=rank, mode=mode, selection=selection)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            v = values[name] if values is not None else torch.randn(p.shape, generator=g, dtype=torch.float64)
            if values is None and p.dim() == 2:  # U (n, r), V (r, K), W0: O(1) products
                v = v / p.shape[1] ** 0.5
            p.copy_(v)
    return layer


def reference_adapters(layer):
    """(slice, U, V, beta, s) per adapter, as sliced_linear_reference takes them; op_args folds the
    sigmoid selection's alpha into U, as the layer does."""
    adapters = []
    for name, a in layer.adapters.items():
        U, beta = a.op_args()
        adapters.append((layer.slices[name], U, a.V, beta, a.scaling))
    return adapters


def forward_backward(fn, layer, x, gy):
    """y and the gradients of x and of every adapter parameter, after fn(x) with fn using `layer`."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    y = fn(x)
    y.backward(gy)
    grads = {"x": x.grad}
    grads.update({name: p.grad for name, p in layer.named_parameters() if p.requires_grad})
    return y.detach(), grads


def run_reference(layer, x, x_adapter=None):
    w, b = layer.base_layer.weight, layer.base_layer.bias
    return sliced_linear_reference(x, w, b, reference_adapters(layer), layer.conv1d, x_adapter)


def assert_matches_reference(dtype, m=37, **build_kw):
    """The layer in `dtype` against the reference in `dtype` and in fp64 (on the same rounded inputs)."""
    layer = build(dtype, **build_kw)
    truth = build(torch.float64, **build_kw, values={k: p.double() for k, p in layer.named_parameters()})
    g = torch.Generator().manual_seed(1)
    x = torch.randn(m, layer.in_features, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    gy = torch.randn(m, layer.out_features, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    got = forward_backward(layer, layer, x, gy)
    ref = forward_backward(lambda t: run_reference(layer, t), layer, x, gy)
    true = forward_backward(lambda t: run_reference(truth, t), truth, x.double(), gy.double())
    assert_within_torch_error("y", got[0], ref[0], true[0], dtype)
    assert set(got[1]) == set(true[1])
    for name, g_true in true[1].items():
        assert_within_torch_error(name, got[1][name], ref[1][name], g_true, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("path", ["fused", "composite", "reference"])
def test_sliced_matches_reference(counted, monkeypatch, path, dtype):
    take_path(monkeypatch, path)
    assert_matches_reference(dtype)
    want = {"fused": 1, "fused_bwd": 1} if path == "fused" else {}
    want.update({"composite": 1, "composite_bwd": 1} if path == "composite" else {})
    assert {k: v for k, v in counted.items() if v} == want


@pytest.mark.parametrize("path", ["fused", "composite"])
@pytest.mark.parametrize(
    "kind, mode, rank, selection",
    [("linear", "fixed", {"q": 3, "v": 5}, "softmax"), ("conv1d", "search", 4, "sigmoid")],
    ids=["linear-fixed-ranks-3-5", "conv1d-sigmoid"],
)
def test_sliced_other_layers(counted, monkeypatch, path, kind, mode, rank, selection):
    """nn.Linear base, fixed mode with a rank (and so a scale) per slice; the sigmoid selection."""
    take_path(monkeypatch, path)
    assert_matches_reference(torch.float32, kind=kind, mode=mode, rank=rank, selection=selection)
    assert counted[path] == counted[f"{path}_bwd"] == 1


def test_one_dropout_mask_for_every_slice(counted):
    """Training with dropout: one mask, drawn once, feeds every adapter (as loralib's MergedLinear)."""
    layer = build(torch.float32)
    for a in layer.adapters.values():
        a.dropout = nn.Dropout(0.3)
    layer.train()
    x = torch.randn(37, K_IN, device=DEVICE)
    torch.manual_seed(7)
    y = layer(x)
    torch.manual_seed(7)
    x_a = nn.functional.dropout(x, 0.3)
    torch.testing.assert_close(y, run_reference(layer, x, x_adapter=x_a))
    assert not torch.equal(y, run_reference(layer, x))


class OpLog(TorchDispatchMode):
    """Records each op the layer's forward dispatches, with the shapes it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[tuple[int, ...]]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, tuple | list) else (out,)
        self.calls.append((str(func), [tuple(o.shape) for o in outs if isinstance(o, torch.Tensor)]))
        return out


def test_one_fused_call_and_no_cat_of_the_output():
    layer = build(torch.float32)
    x = torch.randn(2, 5, K_IN, device=DEVICE)
    with OpLog() as log:
        layer(x)
    names = [name for name, _ in log.calls]
    assert names.count("autolora.fused_linear.default") == 1, names
    wide = [(n, s) for n, s in log.calls if n.startswith("aten.cat") and any(sh[-1] == 3 * SLICE for sh in s)]
    assert not wide, wide


@pytest.mark.slow
def test_gpt2_attention_runs_through_the_sliced_op():
    """Injected into a tiny GPT-2, the c_attn forward of every block is one fused call."""
    from helpers import randomize_adapters, tiny_model

    import autolora

    model = tiny_model("gpt2")
    autolora.inject(model)
    randomize_adapters(model)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with OpLog() as log:
        model(input_ids=ids)
    assert [n for n, _ in log.calls].count("autolora.fused_linear.default") == len(model.transformer.h)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("path", ["fused", "composite"])
def test_gpu_sliced_gpt2_c_attn(counted, monkeypatch, path, dtype):
    """GPT-2 small's c_attn (768 -> 3 x 768, Conv1D), 1000 tokens, k = 8 on q and v."""
    take_path(monkeypatch, path)
    assert_matches_reference(dtype, m=1000, k_in=768, size=768)
    assert counted[path] == counted[f"{path}_bwd"] == 1
