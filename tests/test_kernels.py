"""The Triton path of autolora_linear against autograd of reference.py: output and every gradient.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set here if
absent, plus AUTOLORA_TRITON_ON_CPU=1); with CUDA they run on the GPU. Shapes stay tiny because each
interpreted program costs milliseconds: M=37, K=70, N=130 with 16 x 32 x 32 blocks still gives
ragged edges in every dimension and two M-splits in the gU / gV reductions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import assert_within_torch_error
from torch import nn

CUDA = torch.cuda.is_available()
if not CUDA and "triton" not in sys.modules:
    # triton.language sets up its interpreter hooks at import: the flag has to come first.
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEVICE = "cuda" if CUDA else "cpu"
INTERPRET = os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
    pytest.mark.skipif(
        not CUDA and not INTERPRET, reason="no CUDA, and triton was imported before TRITON_INTERPRET=1"
    ),
]

from autolora_kernels import autolora_linear, autolora_linear_backward_reference  # noqa: E402
from autolora_kernels.reference import autolora_linear_reference  # noqa: E402


def count_calls(monkeypatch, module, prefix: str) -> dict[str, int]:
    """Count the calls of module.<prefix>forward and module.<prefix>backward, as the op makes them."""
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        fn = getattr(module, f"{prefix}{name}")

        def counted(*args, _fn=fn, _name=name, **kwargs):
            calls[_name] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(module, f"{prefix}{name}", counted)
    return calls


@pytest.fixture
def triton_path(monkeypatch):
    """Route the op to the Triton kernels and count their launches (so no test passes on a fallback)."""
    from autolora_kernels import fused_linear_launch as kern

    monkeypatch.setenv("AUTOLORA_TRITON_ON_CPU", "1")
    monkeypatch.delenv("AUTOLORA_FORCE_REFERENCE", raising=False)
    monkeypatch.delenv("AUTOLORA_KERNEL", raising=False)
    return count_calls(monkeypatch, kern, "fused_linear_")


@pytest.fixture
def composite_path(monkeypatch):
    """Route the op to the composite path (AUTOLORA_KERNEL=composite) and count its calls."""
    from autolora_kernels import composite_linear

    monkeypatch.setenv("AUTOLORA_KERNEL", "composite")
    monkeypatch.delenv("AUTOLORA_FORCE_REFERENCE", raising=False)
    return count_calls(monkeypatch, composite_linear, "composite_linear_")


def make_case(m_shape, k, n, r, dtype, *, bias=True, conv1d=False, fixed=False, seed=0):
    """Inputs in fp64 (cast per test) with O(1) outputs; U non-zero, unlike its init, so every term
    (and gbeta) is exercised."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g, dtype=torch.float64) / k**0.5
    case = {
        "x": torch.randn(*m_shape, k, generator=g, dtype=torch.float64),
        "weight": w.t().contiguous() if conv1d else w,  # Conv1D stores (in, out)
        "bias": torch.randn(n, generator=g, dtype=torch.float64) if bias else None,
        "U": torch.randn(n, r, generator=g, dtype=torch.float64) / r**0.5,
        "V": torch.randn(r, k, generator=g, dtype=torch.float64) / k**0.5,
        "beta": None if fixed else torch.randn(r, generator=g, dtype=torch.float64),
        "gy": torch.randn(*m_shape, n, generator=g, dtype=torch.float64),
    }
    return case, {"scaling": 16.0 / r, "conv1d": conv1d}


def run(fn, case, kw, dtype, *, x_grad=True, dropout_mask=None, x_view=None, uv_transposed=False):
    """Forward + backward of fn in `dtype` (beta stays fp32 as in the layer); returns y and grads."""
    dev = DEVICE

    def cast(t, dt=dtype):
        return None if t is None else t.to(device=dev, dtype=dt)

    x = cast(case["x"]).requires_grad_(x_grad)
    U, V = cast(case["U"]), cast(case["V"])
    if uv_transposed:  # column-major parameters: the kernels read them through strides
        U, V = U.t().contiguous().t(), V.t().contiguous().t()
    U, V = U.requires_grad_(), V.requires_grad_()
    beta = None if case["beta"] is None else cast(case["beta"], torch.float32).requires_grad_()
    x_in = x_view(x) if x_view is not None else x
    x_a = None if dropout_mask is None else x_in * cast(dropout_mask)
    y = fn(x_in, cast(case["weight"]), cast(case["bias"]), U, V, beta, x_adapter=x_a, **kw)
    y.backward(cast(case["gy"]))
    grads = {"x": x.grad, "U": U.grad, "V": V.grad, "beta": None if beta is None else beta.grad}
    return y.detach(), grads


def assert_matches_reference(case, kw, dtype, **run_kw):
    """Kernel error vs fp64 truth must stay within 2x PyTorch's own error in `dtype` on the same
    inputs (the reference run in `dtype`), plus one ulp of the result's magnitude for entries where
    PyTorch happens to be exact. Both sides round and accumulate in different orders (the kernel keeps
    t and h in fp32, PyTorch rounds them), hence 2x, as in flash-attention's tests."""
    # Truth from the inputs as rounded to `dtype` (beta is fp32), so only the computation differs.
    rounded = {
        k: None if v is None else v.to(torch.float32 if k == "beta" else dtype).double()
        for k, v in case.items()
    }
    got_y, got_g = run(autolora_linear, rounded, kw, dtype, **run_kw)
    ref_y, ref_g = run(autolora_linear_reference, rounded, kw, dtype, **run_kw)
    true_y, true_g = run(autolora_linear_reference, rounded, kw, torch.float64, **run_kw)
    pairs = [("y", got_y, ref_y, true_y)] + [(k, got_g[k], ref_g[k], true_g[k]) for k in got_g]
    for name, got, ref, true in pairs:
        if true is None:
            assert got is None, f"{name}: expected no gradient"
            continue
        assert_within_torch_error(name, got, ref, true, dtype)


DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rank", [1, 3, 8, 16, 33])
def test_odd_shapes_all_gradients(triton_path, dtype, rank):
    case, kw = make_case((37,), 70, 130, rank, dtype)
    assert_matches_reference(case, kw, dtype)
    assert triton_path == {"forward": 1, "backward": 1}


VARIANTS = {
    "conv1d": dict(case=dict(conv1d=True)),
    "no_bias": dict(case=dict(bias=False)),
    "fixed_mode": dict(case=dict(fixed=True)),
    "rank64_conv1d_fixed": dict(case=dict(conv1d=True, fixed=True), rank=64),
    "x_no_grad": dict(run=dict(x_grad=False)),
    "uv_column_major": dict(run=dict(uv_transposed=True)),
    "x_3d": dict(m_shape=(3, 13)),
    "x_transposed": dict(run=dict(x_view=lambda x: x.t().contiguous().t())),  # strides (1, M)
    "x_sliced_3d": dict(m_shape=(2, 19), run=dict(x_view=lambda x: torch.cat([x, x], -1)[..., ::2])),
    "dropout": dict(dropout=True),
    "dropout_x_no_grad": dict(dropout=True, run=dict(x_grad=False)),
    "dropout_conv1d_no_bias": dict(dropout=True, case=dict(conv1d=True, bias=False)),
}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants(triton_path, variant, dtype):
    case, kw, run_kw = variant_case(variant, dtype)
    assert_matches_reference(case, kw, dtype, **run_kw)
    assert triton_path == {"forward": 1, "backward": 1}


def variant_case(variant: str, dtype: torch.dtype):
    """(case, kw, run_kw) of one of VARIANTS, or of "plain" (rank 3)."""
    spec = VARIANTS.get(variant, {})
    m_shape = spec.get("m_shape", (37,))
    case, kw = make_case(m_shape, 70, 130, spec.get("rank", 3), dtype, **spec.get("case", {}))
    run_kw = dict(spec.get("run", {}))
    if spec.get("dropout"):
        keep = torch.rand(*m_shape, 70, generator=torch.Generator().manual_seed(1)) > 0.5
        run_kw["dropout_mask"] = keep.double() * 2.0  # inverted dropout, p = 0.5: exact in every dtype
    return case, kw, run_kw


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", ["plain", *VARIANTS])
def test_composite_all_gradients(composite_path, variant, dtype):
    """The composite path (cuBLAS on CUDA, plain BLAS here) against the reference, every variant."""
    case, kw, run_kw = variant_case(variant, dtype)
    assert_matches_reference(case, kw, dtype, **run_kw)
    assert composite_path == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("rank", [1, 33, 80])
def test_composite_ranks(composite_path, rank):
    """Odd ranks, and one over the Triton kernels' 64 (the composite has no such limit)."""
    case, kw = make_case((37,), 70, 130, rank, torch.bfloat16)
    assert_matches_reference(case, kw, torch.bfloat16)
    assert composite_path == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("impl", [pytest.param("fused", marks=pytest.mark.slow), "composite"])
@pytest.mark.parametrize(
    "dtype, need_dx, need_dx_adapter, separate",
    [
        (torch.float32, True, False, False),  # gx = gy W0 + (h c) V in one GEMM, h from its prologue
        (torch.float16, True, True, True),  # dropout split: gx = gy W0, gx_a = (h c) V
        (torch.float32, False, True, True),  # only gx_a: h from the P-only launch
        (torch.float16, False, False, False),  # x frozen: P-only launch for h, no M x K output
    ],
)
def test_launchers_without_autograd(impl, dtype, need_dx, need_dx_adapter, separate):
    """The plain launchers (Triton) or composite functions called directly (Conv1D layout): y, t, gx,
    gx_a, gU, gV and gbeta from gcoef, against the reference run in `dtype` and in fp64 (criterion of
    assert_matches_reference)."""
    import autolora_kernels.composite_linear as composite

    if impl == "fused":
        from autolora_kernels import fused_linear_launch as kern

        forward, backward = kern.fused_linear_forward, kern.fused_linear_backward
    else:
        forward, backward = composite.composite_linear_forward, composite.composite_linear_backward

    case, kw = make_case((37,), 70, 130, 5, dtype, conv1d=True)
    xa = case["x"] * (torch.rand(case["x"].shape, generator=torch.Generator().manual_seed(2)) > 0.5) * 2.0
    case["x_a"] = xa if separate else case["x"]
    lo = {
        k: None if v is None else v.to(DEVICE, torch.float32 if k == "beta" else dtype)
        for k, v in case.items()
    }
    hi = {k: None if v is None else v.double() for k, v in lo.items()}
    alpha = torch.softmax(lo["beta"], 0)
    coef = alpha * kw["scaling"]
    y, t = forward(
        lo["x"], lo["weight"], lo["bias"], lo["U"], lo["V"], coef, True, lo["x_a"] if separate else None
    )
    grads = backward(
        lo["gy"], lo["x_a"], lo["weight"], lo["U"], lo["V"], coef, t, True, need_dx, need_dx_adapter, separate
    )
    g_alpha = kw["scaling"] * grads[4]
    got = {"y": y, "t": t, "gx": grads[0], "gx_a": grads[1], "gU": grads[2], "gV": grads[3]}
    got["gbeta"] = alpha * (g_alpha - (alpha * g_alpha).sum())

    def expected(c):
        args = (c["weight"], c["bias"], c["U"], c["V"], c["beta"])
        y = autolora_linear_reference(c["x"], *args, **kw, x_adapter=c["x_a"] if separate else None)
        gxb, gxa, g_u, g_v, g_beta = autolora_linear_backward_reference(
            c["gy"], c["x_a"], c["weight"], c["U"], c["V"], c["beta"], **kw
        )
        t = (c["x_a"] @ c["V"].t()).to(torch.float32 if c["x"].dtype != torch.float64 else torch.float64)
        gx = gxb if separate else gxb + gxa
        return {"y": y, "t": t, "gx": gx, "gx_a": gxa, "gU": g_u, "gV": g_v, "gbeta": g_beta}

    ref, true = expected(lo), expected(hi)
    for name in got:
        wanted = {"gx": need_dx, "gx_a": need_dx_adapter}.get(name, True)
        if not wanted:
            assert got[name] is None, name
            continue
        assert_within_torch_error(name, got[name], ref[name], true[name], dtype)


def test_strided_bias():
    """A bias view with stride 2 (the kernel reads bias with stride 1; the launcher makes it so)."""
    from autolora_kernels import fused_linear_launch as kern

    case, kw = make_case((37,), 70, 130, 3, torch.float32)
    c = {k: v.float().to(DEVICE) for k, v in case.items()}
    bias = torch.stack([c["bias"], -c["bias"]], 1).reshape(-1)[::2]  # same values, stride 2
    coef = torch.softmax(c["beta"], 0) * kw["scaling"]
    y, _ = kern.fused_linear_forward(c["x"], c["weight"], bias, c["U"], c["V"], coef)
    want = autolora_linear_reference(c["x"], c["weight"], c["bias"], c["U"], c["V"], c["beta"], **kw)
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4)


def test_no_tokens(triton_path):
    """M = 0 launches nothing: empty y and gx, zero gU, gV and gbeta."""
    case, kw = make_case((0,), 70, 130, 3, torch.float32)
    y, g = run(autolora_linear, case, kw, torch.float32)
    assert y.shape == (0, 130) and g["x"].shape == (0, 70)
    assert all(torch.count_nonzero(g[k]) == 0 for k in ("U", "V", "beta"))
    assert triton_path == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("separate", [False, True])
def test_double_backward(separate):
    """create_graph=True (the exact hypergradient of docs/METHOD.md section 5) differentiates the gradients:
    gradgradcheck in fp64 through the op, with and without a separate dropout input."""
    case, kw = make_case((4,), 5, 6, 3, torch.float64, conv1d=True)
    w, b = case["weight"], case["bias"]
    inputs = [case[k].clone().requires_grad_() for k in ("x", "U", "V", "beta")]
    if separate:
        inputs.append((case["x"] * 2).requires_grad_())

    def f(x, U, V, beta, x_a=None):
        return autolora_linear(x, w, b, U, V, beta, x_adapter=x_a, **kw)

    assert torch.autograd.gradgradcheck(f, tuple(inputs))


@pytest.mark.slow
def test_double_backward_after_triton_forward(triton_path):
    """The forward on the Triton path, then a gradient of a gradient: matches pure reference autograd."""
    case, kw = make_case((37,), 70, 130, 3, torch.float32)
    c = {k: v.float().to(DEVICE) for k, v in case.items() if v is not None}
    results = []
    for fn in (autolora_linear, autolora_linear_reference):
        U, V, beta = (c[k].clone().requires_grad_() for k in ("U", "V", "beta"))
        y = fn(c["x"], c["weight"], c["bias"], U, V, beta, **kw)
        (g_v,) = torch.autograd.grad(y, V, c["gy"], create_graph=True)
        results.append(torch.autograd.grad(g_v.square().sum(), (U, beta)))
    assert triton_path["forward"] == 1
    for got, want in zip(*results, strict=True):
        # Same formulas, fp32, possibly another summation order: relative to the result's scale (~1e5).
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_backward_reference_is_autograd_of_forward_reference():
    """The explicit backward (used inside the op on the reference path) is docs/METHOD.md section 1's
    formula: check it against autograd of the forward reference in fp64, for the dropout split too."""
    case, kw = make_case((9,), 11, 7, 3, torch.float64, conv1d=True)
    x, xa = case["x"].clone().requires_grad_(), (case["x"] * 0.5).requires_grad_()
    U, V, beta = (case[k].clone().requires_grad_() for k in ("U", "V", "beta"))
    y = autolora_linear_reference(x, case["weight"], case["bias"], U, V, beta, x_adapter=xa, **kw)
    want = torch.autograd.grad(y, (x, xa, U, V, beta), case["gy"])
    got = autolora_linear_backward_reference(case["gy"], xa.detach(), case["weight"], U, V, beta, **kw)
    for name, g, w in zip(("gx", "gx_adapter", "gU", "gV", "gbeta"), got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "mutate, err, words",
    [
        (lambda a: a.update(U=a["U"][:-1]), ValueError, "U, V: expected"),
        (lambda a: a.update(V=a["V"][:, :-1]), ValueError, "U, V: expected"),
        (lambda a: a.update(bias=a["bias"][:-1]), ValueError, "bias: expected shape"),
        (lambda a: a.update(beta=a["beta"][:-1]), ValueError, "beta: expected shape"),
        (lambda a: a.update(x=a["x"][:, :-1]), ValueError, "x: expected last dimension"),
        (lambda a: a.update(U=a["U"].half()), TypeError, "U: expected torch.float32"),
        (lambda a: a.update(x=a["x"].double()), TypeError, "x: dtype torch.float64"),
        (lambda a: a.update(V=a["V"].to("meta")), TypeError, "V: expected torch.float32 on cpu"),
        (lambda a: a.update(beta=a["beta"].to("meta")), TypeError, "beta: expected a floating tensor"),
        (lambda a: a.update(x_adapter=a["x"][:-1]), ValueError, "x_adapter: expected the shape"),
        (lambda a: a.update(x_adapter=a["x"].half()), TypeError, "x_adapter: expected torch.float32"),
    ],
)
def test_bad_input_fails_before_launch(triton_path, mutate, err, words):
    case, kw = make_case((4,), 6, 5, 2, torch.float32)
    args = {k: case[k].float() for k in ("x", "weight", "bias", "U", "V", "beta")}
    args["x_adapter"] = None
    mutate(args)
    with pytest.raises(err, match=words):
        autolora_linear(**args, **kw)
    assert triton_path == {"forward": 0, "backward": 0}


def test_force_reference_env(triton_path, monkeypatch):
    monkeypatch.setenv("AUTOLORA_FORCE_REFERENCE", "1")
    case, kw = make_case((5,), 6, 7, 2, torch.float32)
    y, _ = run(autolora_linear, case, kw, torch.float32)
    assert y.shape == (5, 7) and triton_path == {"forward": 0, "backward": 0}


MISSING_TRITON = """
import sys, warnings, torch
sys.modules["triton"] = None  # `import triton` now raises ImportError
from autolora_kernels import autolora_linear, autolora_linear_reference
x, w, b, U, V, beta = (torch.randn(*s) for s in ((5, 6), (7, 6), (7,), (7, 2), (2, 6), (2,)))
args = (x, w, b, U, V, beta, 8.0)
with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    ys = [autolora_linear(*args) for _ in range(2)]
assert sum("triton unavailable" in str(w.message) for w in record) == 1, [str(w.message) for w in record]
for y in ys:
    torch.testing.assert_close(y, autolora_linear_reference(*args))
"""


@pytest.mark.slow
def test_missing_triton_falls_back_with_one_warning():
    """A fresh interpreter where triton cannot be imported, asked for the Triton path twice."""
    env = dict(os.environ, AUTOLORA_TRITON_ON_CPU="1", TRITON_INTERPRET="1")
    env.pop("AUTOLORA_FORCE_REFERENCE", None)
    subprocess.run([sys.executable, "-c", MISSING_TRITON], check=True, timeout=120, env=env)


@pytest.mark.slow
def test_import_has_no_triton_side_effect():
    code = "import sys, autolora_kernels; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------------
# What the GPU needs, checked on the CPU: dot shapes, shared memory, switches, an sm_90 compile
# ------------------------------------------------------------------------------------------------


def _power_of_two_at_least_16(v: int) -> bool:
    return v >= 16 and v & (v - 1) == 0


def test_rank_pad_is_a_dot_dimension_the_gpu_accepts():
    """The interpreter accepts tl.dot with an inner dimension of 8; the GPU needs >= 16 (16-bit)."""
    from autolora_kernels.fused_linear_launch import MAX_RANK, rank_pad

    for r in range(1, MAX_RANK + 1):
        assert _power_of_two_at_least_16(rank_pad(r)) and rank_pad(r) >= r, r
    for bad in (0, MAX_RANK + 1):
        with pytest.raises(ValueError, match="rank"):
            rank_pad(bad)


def test_every_tile_is_a_dot_shape_the_gpu_accepts():
    """tl.arange needs powers of two, tl.dot >= 16 in M, N and K: every block any path may launch."""
    from autolora_kernels import fused_linear_launch as kern
    from autolora_kernels import fused_linear_tuning as tuning

    gemm = [s[:3] for shapes in tuning.GEMM_SHAPES.values() for s in shapes]
    grad = [s[:2] for shapes in tuning.GRAD_SHAPES.values() for s in shapes]
    interp = [tuple(kern.INTERPRET_CONFIG[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))]
    interp.append(tuple(kern.INTERPRET_GRAD_CONFIG.values()))
    for blocks in gemm + grad + interp:
        assert all(_power_of_two_at_least_16(b) for b in blocks), blocks


# Shared memory that Triton allocates for the forward GEMM compiled for sm_90 (tests/sm90_compile.py,
# triton 3.9, bf16): (tile, rank pad) -> bytes.
SM90_GEMM_SHARED = {
    ((128, 256, 64, 3, 8), 16): 153600,
    ((128, 256, 64, 3, 8), 64): 172032,
    ((128, 128, 64, 4, 4), 16): 139264,
    ((128, 128, 64, 4, 4), 64): 163840,
}


def test_shared_memory_estimate_matches_the_sm90_compile():
    from autolora_kernels.fused_linear_tuning import gemm_smem_bytes

    for (shape, r_pad), want in SM90_GEMM_SHARED.items():
        assert gemm_smem_bytes(shape, r_pad, 2, True, True) == want, shape


def test_tile_selection_fits_the_h100_and_the_dot_unit():
    from autolora_kernels import fused_linear_tuning as tuning

    select, smem, h100 = tuning.select_gemm_shapes, tuning.gemm_smem_bytes, tuning.H100_SHARED_BYTES
    assert tuning.dot_unit(torch.float32, "ieee") == "fma"
    assert tuning.dot_unit(torch.float32, "tf32") == tuning.dot_unit(torch.bfloat16, "tf32") == "mma"
    # bf16: every tensor-core tile fits; fp32 through TF32 at rank pad 64: those over 227 KB do not
    assert select("mma", 16384, 4096, 64, 2, True, True, h100) == tuning.GEMM_SHAPES["mma"]
    tf32 = select("mma", 16384, 4096, 64, 4, True, True, h100)
    assert tf32 and (128, 256, 64, 3, 8) not in tf32
    assert all(smem(s, 64, 4, True, True) <= h100 for s in tf32)
    assert select("fma", 16384, 4096, 64, 4, True, True, h100) == tuning.GEMM_SHAPES["fma"]
    assert all(s[0] <= 64 for s in select("mma", 16, 4096, 16, 2, True, True, h100))
    assert len({s[1] for s in select("mma", 4096, 1, 16, 2, False, True, h100)}) == 1  # P only
    assert len(select("mma", 4096, 4096, 16, 2, True, True, 1024)) == 1  # never an empty list
    grad_tf32 = tuning.select_grad_shapes("mma", 64, 4, h100)
    assert (128, 128, 3, 8) not in grad_tf32 and grad_tf32
    assert tuning.select_grad_shapes("mma", 64, 2, h100) == tuning.GRAD_SHAPES["mma"]


TF32_SWITCH = """
import torch
from autolora_kernels import autolora_linear, autolora_linear_reference
from autolora_kernels import fused_linear_launch as kern
assert kern._dot_switches(torch.float32) == (False, "ieee")  # PyTorch's default: no TF32
torch.backends.cuda.matmul.fp32_precision = "tf32"  # torch >= 2.9's switch: allow_tf32 now raises
assert kern._dot_switches(torch.float32) == (False, "tf32")
args = [torch.randn(*s) for s in ((37, 70), (130, 70), (130,), (130, 3), (3, 70), (3,))]
y = autolora_linear(*args, 2.0)
torch.testing.assert_close(y, autolora_linear_reference(*args, 2.0), rtol=1e-2, atol=1e-2)
torch.backends.cuda.matmul.fp32_precision = "ieee"
assert kern._dot_switches(torch.float32) == (False, "ieee")
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9 has one TF32 switch"
)
def test_fp32_follows_the_new_tf32_switch():
    """After `fp32_precision = "tf32"`, reading the legacy allow_tf32 raises: fp32 layers crashed."""
    env = dict(os.environ, AUTOLORA_TRITON_ON_CPU="1", TRITON_INTERPRET="1")
    env.pop("AUTOLORA_FORCE_REFERENCE", None)
    subprocess.run([sys.executable, "-c", TF32_SWITCH], check=True, timeout=300, env=env)


INTERPRET_SPELLED_TRUE = """
import torch
from autolora_kernels import autolora_linear, autolora_linear_reference
from autolora_kernels import fused_linear_launch as kern
assert kern.interpreting()
args = [torch.randn(*s).bfloat16() for s in ((37, 70), (130, 70), (130,), (130, 3), (3, 70))]
beta = torch.randn(3)
y = autolora_linear(*args, beta, 2.0).double()
want = autolora_linear_reference(*[a.double() for a in args], beta.double(), 2.0)
assert (y - want).abs().max() < 0.05 * want.abs().max(), (y - want).abs().max()  # bf16: 2^-8 each
"""


@pytest.mark.slow
def test_interpreter_flag_spelled_true():
    """Triton interprets for TRITON_INTERPRET=true too: a launcher that read only "1" would take the
    GPU path and fail on a machine without one."""
    env = dict(os.environ, AUTOLORA_TRITON_ON_CPU="1", TRITON_INTERPRET="true")
    env.pop("AUTOLORA_FORCE_REFERENCE", None)
    subprocess.run([sys.executable, "-c", INTERPRET_SPELLED_TRUE], check=True, timeout=300, env=env)


@pytest.mark.slow
@pytest.mark.skipif(CUDA, reason="with a GPU the tests below compile and run the kernels themselves")
def test_kernels_compile_for_sm90_without_a_gpu():
    """Triton's compiler and bundled ptxas need no GPU: tests/sm90_compile.py compiles a few launches
    for sm_90 and checks what only the GPU compiler enforces (about 10 s)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "sm90_compile.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick"], capture_output=True, text=True, timeout=600, env=env
    )
    if proc.returncode and "triton.backends.nvidia" in proc.stderr:
        pytest.skip("this triton has no NVIDIA backend")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    gemm, grad, fma = out["gemm_bf16"], out["grad_bf16"], out["gemm_fp32_fma"]
    assert gemm["dot"] == grad["dot"] == "wgmma"  # bf16 on the tensor cores, not upcast to fp32
    assert gemm["shared"] == out["gemm_bf16_smem_estimate"] <= 232448  # an H100 block's limit
    assert gemm.get("stack", 0) == 0 and fma.get("stack", 0) == 0
    assert fma["dot"] == "fma" and max(out["gemm_fp32_candidates"]) <= 64
    assert out["rank_pad_8"].startswith("refused") and "16" in out["rank_pad_8"]


# ------------------------------------------------------------------------------------------------
# GPU only: bf16 with real tensor cores, and shapes large enough for the autotuned tiles
# ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, k, n, r", [(4096, 1024, 3072, 8), (1000, 768, 2304, 64), (4133, 4096, 4096, 16)])
@pytest.mark.parametrize("conv1d", [False, True])
def test_gpu_large(triton_path, dtype, m, k, n, r, conv1d):
    case, kw = make_case((m,), k, n, r, dtype, conv1d=conv1d)
    assert_matches_reference(case, kw, dtype)
    assert triton_path == {"forward": 1, "backward": 1}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_second_device_while_first_is_current(triton_path):
    """Triton launches on the current device: the launchers switch to the tensors' device."""
    torch.cuda.set_device(0)
    case, kw = make_case((37,), 70, 130, 3, torch.float16)
    c = {k: v.to("cuda:1", torch.float16) for k, v in case.items()}
    y = autolora_linear(c["x"], c["weight"], c["bias"], c["U"], c["V"], c["beta"].float(), **kw)
    assert torch.cuda.current_device() == 0  # the switch to cuda:1 lasts for the launch only
    want = autolora_linear_reference(c["x"], c["weight"], c["bias"], c["U"], c["V"], c["beta"].float(), **kw)
    assert y.device == torch.device("cuda:1")
    # A launch on cuda:0 would read cuda:1's pointers as cuda:0 addresses: garbage or a fault.
    torch.testing.assert_close(y, want, rtol=2e-2, atol=2e-2)
    assert triton_path["forward"] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_layer_bf16_dropout(triton_path):
    from autolora import FusedAutoLoraLinear

    layer = FusedAutoLoraLinear(nn.Linear(768, 768), rank=8, dropout=0.1).to(DEVICE, torch.bfloat16)
    x = torch.randn(4, 512, 768, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    layer(x).float().square().mean().backward()
    assert triton_path == {"forward": 1, "backward": 1}
    assert all(torch.isfinite(g).all() for g in (x.grad, layer.U.grad, layer.V.grad, layer.beta.grad))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_dispatcher_times_both_and_keeps_one(monkeypatch):
    """AUTOLORA_KERNEL=auto on a GPU: the first call of each direction times the fused kernel and the
    composite with CUDA events, caches the faster, and the result is right whichever it is."""
    from autolora_kernels import dispatch

    for name in ("AUTOLORA_KERNEL", "AUTOLORA_FORCE_REFERENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dispatch, "_choices", {})
    case, kw = make_case((4096,), 1024, 3072, 8, torch.bfloat16, conv1d=True)
    assert_matches_reference(case, kw, torch.bfloat16)
    made = dispatch.choices()
    assert sorted(c["direction"] for c in made) == ["backward", "forward"]
    for c in made:
        assert set(c["ms"]) == {"fused", "composite"} and min(c["ms"].values()) > 0
        assert c["choice"] == min(c["ms"], key=lambda n: (c["ms"][n], n != "composite"))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_rank_over_64_takes_the_composite(monkeypatch):
    """No Triton kernel for rank 80: on CUDA the composite (cuBLAS) runs, with one warning."""
    from autolora_kernels import composite_linear, fused_linear

    monkeypatch.delenv("AUTOLORA_KERNEL", raising=False)
    monkeypatch.setattr(fused_linear, "_warned", set())  # the warning is once per process
    calls = count_calls(monkeypatch, composite_linear, "composite_linear_")
    case, kw = make_case((37,), 70, 130, 80, torch.bfloat16)
    with pytest.warns(RuntimeWarning, match="no Triton kernel for rank 80.*composite path"):
        assert_matches_reference(case, kw, torch.bfloat16)
    assert calls == {"forward": 1, "backward": 1}
