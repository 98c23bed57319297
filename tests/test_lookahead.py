"""The lookahead ops (autolora_kernels.lookahead) against the single-tensor reference loops.

Both fast paths are exercised: the compiled CPU extension (built here on first use, as in CI) and
the torch._foreach fallback (forced with backend="foreach" and with AUTOLORA_DISABLE_EXT=1).
"""

from __future__ import annotations

import math
import re
import shutil
import warnings

import pytest
import torch

from autolora_kernels import _ext
from autolora_kernels import lookahead as la
from autolora_kernels import lookahead_reference as ref

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FAST = ["ext", "foreach"]
# Both paths round the same fp32 math once; the fp32 value may differ in its last bits (FMA, order
# of the norm's sums), so a result may differ by one ulp of its dtype: 2^-23 (a few, fp32),
# 2^-10 (fp16), 2^-7 (bf16), relative. atol only covers values that round to (near) zero.
TOL = {
    torch.float32: dict(rtol=4 * 2**-23, atol=1e-7),
    torch.float16: dict(rtol=2**-10, atol=1e-7),
    torch.bfloat16: dict(rtol=2**-7, atol=1e-7),
}
NORM_TOL = dict(rtol=1e-5, atol=0.0)  # fp32 sums of up to 16k squares per chunk, in another order
SHAPES = [(768, 8), (8, 768), (37, 3), (123,), (5, 431), (1,), (16, 33), (64, 1)]
HAS_COMPILER = shutil.which("c++") is not None and shutil.which("ninja") is not None


@pytest.fixture(scope="module", autouse=True)
def _built():
    """The first-use build, once per session; the tests below then exercise the real extension."""
    ok = la.build()
    if HAS_COMPILER:
        assert ok, _ext.info()
        assert la.backend("cpu") == "cpu-ext"
    yield


def _backend_or_skip(backend: str) -> str:
    if backend == "ext" and not _ext.has_device("cpu"):
        pytest.skip(f"extension unavailable: {_ext.info()['error']}")
    return backend


def make(n: int, dtype: torch.dtype, seed: int = 0, scale: float = 1.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(SHAPES[i % len(SHAPES)], generator=g) * scale).to(dtype) for i in range(n)]


def clones(ts):
    return [t.clone() for t in ts]


def assert_lists_close(got, want, dtype):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL[dtype])


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({4: torch.int32, 2: torch.int16}[t.element_size()])


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 48, 200])
def test_sgd_step_matches_reference(backend, dtype, n):
    backend = _backend_or_skip(backend)
    params, grads = make(n, dtype, 1), make(n, dtype, 2)
    want = clones(params)
    ref.sgd_step_(want, grads, 0.37)
    la.sgd_step_(params, grads, 0.37, backend=backend)
    assert_lists_close(params, want, dtype)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 48, 200])
def test_norm_and_eps_match_reference(backend, dtype, n):
    backend = _backend_or_skip(backend)
    v = make(n, dtype, 3)
    norm = la.global_norm(v, backend=backend)
    assert norm.dtype == torch.float32 and norm.dim() == 0
    torch.testing.assert_close(norm, ref.global_norm(v), **NORM_TOL)
    exact = math.sqrt(sum(float(t.double().square().sum()) for t in v))
    assert abs(float(norm) - exact) <= 1e-5 * exact
    eps = la.fd_eps(v, 0.01, backend=backend)
    assert eps.dtype == torch.float32 and eps.dim() == 0
    torch.testing.assert_close(eps, ref.fd_eps(v, 0.01), **NORM_TOL)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 48, 200])
def test_perturb_restore_sequence(backend, dtype, n):
    """The whole lookahead: backup, step, eps, W+ and W- from the backup, bit-exact restore."""
    backend = _backend_or_skip(backend)
    params, grads, v = make(n, dtype, 4), make(n, dtype, 5), make(n, dtype, 6, scale=1e-2)
    original = clones(params)
    saved = la.backup(params, backend=backend)
    assert all(s.data_ptr() != p.data_ptr() for s, p in zip(saved, params, strict=True))
    assert all(torch.equal(bits(s), bits(p)) for s, p in zip(saved, params, strict=True))
    la.sgd_step_(params, grads, 0.1, backend=backend)
    eps = la.fd_eps(v, 0.01, backend=backend)
    assert float(eps) * float(ref.global_norm(v)) == pytest.approx(0.01, rel=1e-5)  # eps ||v|| = r
    for sign in (1.0, -1.0):
        la.set_perturbed_(params, saved, v, eps, sign, backend=backend)
        want = clones(params)
        ref.set_perturbed_(want, saved, v, eps, sign)
        assert_lists_close(params, want, dtype)
    la.restore_(params, saved, backend=backend)
    assert all(torch.equal(bits(p), bits(o)) for p, o in zip(params, original, strict=True))


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_restore_is_bit_exact_for_special_values(backend):
    backend = _backend_or_skip(backend)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45, -3.5])
    for dtype in DTYPES:
        backups = [special.to(dtype), torch.randn(40000).to(dtype)]  # > one 16k-element chunk
        params = [torch.zeros_like(b) for b in backups]
        la.restore_(params, backups, backend=backend)
        assert all(torch.equal(bits(p), bits(b)) for p, b in zip(params, backups, strict=True))
        copies = la.backup(backups, backend=backend)
        assert all(torch.equal(bits(c), bits(b)) for c, b in zip(copies, backups, strict=True))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_norm_gives_finite_eps_and_no_perturbation(backend, dtype):
    backend = _backend_or_skip(backend)
    params = make(48, dtype, 7)
    saved = la.backup(params, backend=backend)
    zero = [torch.zeros_like(p) for p in params]
    assert float(la.global_norm(zero, backend=backend)) == 0.0
    eps = la.fd_eps(zero, 0.01, backend=backend)
    assert torch.isfinite(eps) and float(eps) == pytest.approx(0.01)
    for sign in (1.0, -1.0):
        la.set_perturbed_(params, saved, zero, eps, sign, backend=backend)
        assert all(torch.equal(p, s) for p, s in zip(params, saved, strict=True))
        assert not any(torch.isnan(p).any() for p in params)


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_empty_lists(backend):
    backend = _backend_or_skip(backend)
    assert la.backup([], backend=backend) == []
    norm = la.global_norm([], backend=backend)
    assert norm.dtype == torch.float32 and norm.dim() == 0 and float(norm) == 0.0
    eps = la.fd_eps([], 0.01, backend=backend)
    assert float(eps) == pytest.approx(0.01)
    la.sgd_step_([], [], 0.1, backend=backend)
    la.adam_step_([], [], [], [], 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, backend=backend)
    la.set_perturbed_([], [], [], eps, 1.0, backend=backend)
    la.restore_([], [], backend=backend)


def _adam_state(n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    params = make(n, dtype, seed)
    grads = make(n, dtype, seed + 1)
    exp_avg = [(torch.randn(p.shape, generator=g) * 0.1).to(dtype) for p in params]
    exp_avg_sq = [(torch.rand(p.shape, generator=g) * 0.01).to(dtype) for p in params]
    return params, grads, exp_avg, exp_avg_sq


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 48])
def test_adam_step_matches_reference_and_keeps_moments(backend, dtype, n):
    backend = _backend_or_skip(backend)
    params, grads, exp_avg, exp_avg_sq = _adam_state(n, dtype, 10)
    m0, v0 = clones(exp_avg), clones(exp_avg_sq)
    want = clones(params)
    args = (5, 1e-3, 0.9, 0.999, 1e-8, 0.01)
    ref.adam_step_(want, grads, exp_avg, exp_avg_sq, *args)
    la.adam_step_(params, grads, exp_avg, exp_avg_sq, *args, backend=backend)
    assert_lists_close(params, want, dtype)
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(exp_avg + exp_avg_sq, m0 + v0, strict=True))


@pytest.mark.parametrize("backend", FAST + ["reference"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_step_is_torch_adamw(backend, weight_decay):
    """After 3 real AdamW steps, the virtual step 4 equals AdamW's step 4, moments unchanged."""
    backend = _backend_or_skip(backend)
    params = [torch.nn.Parameter(t) for t in make(12, torch.float32, 20)]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay)
    for k in range(3):
        for p, g in zip(params, make(12, torch.float32, 30 + k), strict=True):
            p.grad = g
        opt.step()
    grads = make(12, torch.float32, 40)
    virtual = [p.detach().clone() for p in params]
    m = [opt.state[p]["exp_avg"] for p in params]
    v = [opt.state[p]["exp_avg_sq"] for p in params]
    m0, v0 = clones(m), clones(v)
    la.adam_step_(virtual, grads, m, v, 4, 1e-2, 0.9, 0.99, 1e-8, weight_decay, backend=backend)
    assert all(torch.equal(a, b) for a, b in zip(m + v, m0 + v0, strict=True))
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.step()
    assert_lists_close(virtual, [p.detach() for p in params], torch.float32)


@pytest.mark.parametrize("backend", FAST)
def test_mixed_dtypes_across_positions(backend):
    backend = _backend_or_skip(backend)
    params = [torch.randn(768, 8), torch.randn(8, 768).bfloat16(), torch.randn(33).half()]
    grads = [torch.randn_like(p) for p in params]
    want = clones(params)
    ref.sgd_step_(want, grads, 0.5)
    la.sgd_step_(params, grads, 0.5, backend=backend)
    for a, b in zip(params, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[a.dtype])
    torch.testing.assert_close(la.global_norm(params, backend=backend), ref.global_norm(params), **NORM_TOL)


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_bad_inputs_raise_value_errors_naming_the_argument(backend):
    backend = _backend_or_skip(backend)
    p = [torch.randn(8, 16), torch.randn(16, 8)]
    g = [torch.randn(8, 16), torch.randn(16, 8)]
    eps = torch.tensor(0.01)
    with pytest.raises(ValueError, match=r"grads: expected 2 tensors"):
        la.sgd_step_(p, g[:1], 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"grads\[1\]: expected shape \[16, 8\]"):
        la.sgd_step_(p, [g[0], g[1].t().contiguous()], 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"grads\[0\]: expected dtype"):
        la.sgd_step_(p, [g[0].half(), g[1]], 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"params\[1\]: expected a contiguous tensor"):
        la.sgd_step_([p[0], torch.randn(8, 16).t()], g, 0.1, backend=backend)
    with pytest.raises(ValueError, match=r"v\[0\]: expected a contiguous tensor"):
        la.set_perturbed_(p, g, [torch.randn(16, 8).t(), g[1]], eps, 1.0, backend=backend)
    with pytest.raises(ValueError, match=r"tensors\[0\]: expected dtype float32, float16"):
        la.global_norm([p[0].long()], backend=backend)
    with pytest.raises(ValueError, match=r"backups: expected 2 tensors"):
        la.restore_(p, g[:1], backend=backend)
    with pytest.raises(ValueError, match=r"exp_avg_sq\[0\]: expected shape"):
        la.adam_step_(p, g, g, [g[1], g[0]], 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, backend=backend)
    with pytest.raises(ValueError, match=r"step: expected"):
        la.adam_step_(p, g, g, g, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0, backend=backend)
    with pytest.raises(ValueError, match=r"eps: expected a 0-d float32 tensor"):
        la.set_perturbed_(p, g, g, eps.double(), 1.0, backend=backend)


def test_disable_env_selects_foreach(monkeypatch):
    monkeypatch.setenv("AUTOLORA_DISABLE_EXT", "1")
    assert la.backend("cpu") == "foreach"
    params, grads = make(5, torch.float32, 50), make(5, torch.float32, 51)
    want = clones(params)
    ref.sgd_step_(want, grads, 0.2)
    la.sgd_step_(params, grads, 0.2)  # auto: foreach
    assert_lists_close(params, want, torch.float32)
    with pytest.raises(ValueError, match="backend: 'ext'"):
        la.sgd_step_(params, grads, 0.2, backend="ext")


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(
        _ext, "_state", {"tried": False, "loaded": False, "error": None, "how": None, "cuda": False}
    )
    monkeypatch.setattr(_ext, "_registered", lambda: False)
    monkeypatch.setattr(_ext, "_load_prebuilt", lambda: False)
    monkeypatch.setattr(_ext, "csrc_dir", lambda: None)
    with pytest.warns(RuntimeWarning, match="torch._foreach") as record:
        assert la.backend("cpu") == "foreach"
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params, grads = make(4, torch.float32, 60), make(4, torch.float32, 61)
        la.sgd_step_(params, grads, 0.1)
        assert la.backend("cpu") == "foreach"


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend: expected one of"):
        la.global_norm([torch.ones(3)], backend="fused")


# ---- the fused backup-and-step ops and the caller-owned backup workspace (out=) ----


def _unchanged(ts, before) -> bool:
    return all(torch.equal(bits(a), bits(b)) for a, b in zip(ts, before, strict=True))


@pytest.mark.parametrize("backend", FAST + ["reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backup_into_workspace(backend, dtype):
    backend = _backend_or_skip(backend)
    params = make(48, dtype, 70)
    ws = [torch.full_like(p, 7.0) for p in params]
    saved = la.backup(params, out=ws, backend=backend)
    assert all(s is w for s, w in zip(saved, ws, strict=True))  # the workspace itself, filled
    assert _unchanged(saved, params)


@pytest.mark.parametrize("backend", FAST + ["reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 48, 200])
@pytest.mark.parametrize("workspace", [False, True])
def test_backup_and_sgd_step_matches_backup_then_step(backend, dtype, n, workspace):
    backend = _backend_or_skip(backend)
    params, grads = make(n, dtype, 71), make(n, dtype, 72)
    original, want = clones(params), clones(params)
    ref.sgd_step_(want, grads, 0.37)
    ws = [torch.empty_like(p) for p in params] if workspace else None
    saved = la.backup_and_sgd_step_(params, grads, 0.37, out=ws, backend=backend)
    if workspace:
        assert all(s is w for s, w in zip(saved, ws, strict=True))
    assert all(s.data_ptr() != p.data_ptr() for s, p in zip(saved, params, strict=True))
    assert _unchanged(saved, original)  # the backup is W before the step, bit for bit
    assert_lists_close(params, want, dtype)


@pytest.mark.parametrize("backend", FAST + ["reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workspace", [False, True])
def test_backup_and_adam_step_matches_backup_then_step(backend, dtype, workspace):
    backend = _backend_or_skip(backend)
    params, grads, exp_avg, exp_avg_sq = _adam_state(48, dtype, 73)
    original, want, m0, v0 = clones(params), clones(params), clones(exp_avg), clones(exp_avg_sq)
    args = (5, 1e-3, 0.9, 0.999, 1e-8, 0.01)
    ref.adam_step_(want, grads, exp_avg, exp_avg_sq, *args)
    ws = [torch.empty_like(p) for p in params] if workspace else None
    saved = la.backup_and_adam_step_(params, grads, exp_avg, exp_avg_sq, *args, out=ws, backend=backend)
    assert _unchanged(saved, original)
    assert_lists_close(params, want, dtype)
    assert _unchanged(exp_avg + exp_avg_sq, m0 + v0)


@pytest.mark.parametrize("backend", FAST)
def test_workspace_sequence_over_iterations_restores_exactly(backend):
    """Two search iterations reusing one workspace: fused backup-and-step, eps, W+, W-, restore."""
    backend = _backend_or_skip(backend)
    params = make(48, torch.bfloat16, 74)
    ws = None
    for it in range(2):
        grads, v = make(48, torch.bfloat16, 75 + it), make(48, torch.bfloat16, 77 + it, scale=1e-2)
        original = clones(params)
        ws = la.backup_and_sgd_step_(params, grads, 0.1, out=ws, backend=backend)
        eps = la.fd_eps(v, 0.01, backend=backend)
        for sign in (1.0, -1.0):
            la.set_perturbed_(params, ws, v, eps, sign, backend=backend)
            want = clones(params)
            ref.set_perturbed_(want, original, v, eps, sign)
            assert_lists_close(params, want, torch.bfloat16)
        la.restore_(params, ws, backend=backend)
        assert _unchanged(params, original)


def _offset(t: torch.Tensor, k: int) -> torch.Tensor:
    """A contiguous copy of t whose data starts k elements into its storage (unaligned for k odd)."""
    out = torch.empty(t.numel() + k, dtype=t.dtype)[k:].view(t.shape)
    return out.copy_(t)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_lists_stream_and_match(dtype):
    """Lists past the extension's streaming threshold (24 MiB touched per call), aligned and not,
    with odd sizes: the non-temporal store paths and their head/tail copies."""
    _backend_or_skip("ext")
    g = torch.Generator().manual_seed(80)
    sizes = [(3 << 21) + 3, (1 << 21) + 1, 37]  # 34 MB per fp32 list, 17 MB per 16-bit one
    offsets = (0, 1, 3)  # elements: 32-byte aligned, then not
    params = [_offset(torch.randn(n, generator=g).to(dtype), k) for n, k in zip(sizes, offsets, strict=True)]
    params[0][:3] = torch.tensor([float("nan"), -0.0, float("inf")], dtype=dtype)
    grads = [torch.randn(n, generator=g).to(dtype) for n in sizes]
    v = [_offset(torch.randn(n, generator=g).to(dtype), 1) * 1e-2 for n in sizes]
    original, want = clones(params), clones(params)
    ref.sgd_step_(want, grads, 0.25)
    ws = [_offset(torch.zeros(n, dtype=dtype), 1) for n in sizes]
    la.backup_and_sgd_step_(params, grads, 0.25, out=ws, backend="ext")
    assert _unchanged(ws, original)
    for a, b in zip(params, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], equal_nan=True)
    eps = la.fd_eps(v, 0.01, backend="ext")
    la.set_perturbed_(params, ws, v, eps, -1.0, backend="ext")
    want = clones(params)
    ref.set_perturbed_(want, ws, v, eps, -1.0)
    for a, b in zip(params, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], equal_nan=True)
    la.restore_(params, ws, backend="ext")
    assert _unchanged(params, original)
    copies = la.backup(params, out=[torch.empty_like(p) for p in params], backend="ext")
    assert _unchanged(copies, original)


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_fused_ops_on_empty_lists(backend):
    backend = _backend_or_skip(backend)
    assert la.backup([], out=[], backend=backend) == []
    assert la.backup_and_sgd_step_([], [], 0.1, backend=backend) == []
    assert la.backup_and_sgd_step_([], [], 0.1, out=[], backend=backend) == []
    args = (1, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert la.backup_and_adam_step_([], [], [], [], *args, backend=backend) == []


@pytest.mark.parametrize("backend", FAST + ["reference"])
def test_fused_ops_reject_bad_input_before_writing(backend):
    backend = _backend_or_skip(backend)
    p = [torch.randn(8, 16), torch.randn(16, 8)]
    g = [torch.randn(8, 16), torch.randn(16, 8)]
    ws = [torch.zeros(8, 16), torch.zeros(16, 8)]
    p0, ws0 = clones(p), clones(ws)
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.0)

    def backup(out):
        return la.backup(p, out=out, backend=backend)

    def sgd(grads=g, out=ws):
        return la.backup_and_sgd_step_(p, grads, 0.1, out=out, backend=backend)

    def adam(m=g, v=g, step=1, out=ws):
        return la.backup_and_adam_step_(p, g, m, v, step, *hyper, out=out, backend=backend)

    cases = [
        (r"out: expected 2 tensors", lambda: backup(ws[:1])),
        (r"out\[1\]: expected shape \[16, 8\]", lambda: backup([ws[0], ws[0]])),
        (r"out\[0\]: expected memory apart", lambda: backup([p[0].view(16, 8).view(8, 16), ws[1]])),
        (r"out\[0\]: expected dtype", lambda: sgd(out=[ws[0].half(), ws[1]])),
        (r"out\[1\]: expected memory apart from params\[1\]", lambda: sgd(out=[ws[0], p[1]])),
        (r"grads\[1\]: expected shape", lambda: sgd(grads=[g[0], g[0]])),
        (r"grads: expected 2 tensors", lambda: sgd(grads=g[:1])),
        (r"exp_avg_sq\[0\]: expected shape", lambda: adam(v=[g[1], g[0]])),
        (r"step: expected", lambda: adam(step=0)),
        (r"out\[1\]: expected a contiguous tensor", lambda: adam(out=[ws[0], torch.zeros(8, 16).t()])),
    ]
    for match, call in cases:
        with pytest.raises(ValueError, match=match):
            call()
        assert _unchanged(p, p0) and _unchanged(ws, ws0), match  # nothing written before the error


# ------------------------------------------------------------------------------------------------
# The CUDA kernels compile for sm_90 without a GPU (nvcc and the CUDA headers suffice)
# ------------------------------------------------------------------------------------------------


def _nvcc_flags(include_dir) -> list[str]:
    """What torch.utils.cpp_extension's JIT build passes to nvcc for csrc/cuda on an H100 (_ext.py
    adds -O3 -lineinfo), compile only. A CPU wheel of torch lacks c10/cuda's generated macro header:
    include_dir gets the one line that the CUDA wheel's copy holds."""
    import sysconfig

    from torch.utils import cpp_extension as ce

    macros = include_dir / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    macros.parent.mkdir(parents=True)
    macros.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    includes = [str(include_dir), *ce.include_paths(), sysconfig.get_paths()["include"], str(_ext.csrc_dir())]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        *ce.COMMON_NVCC_FLAGS,
        "-std=c++20",
        "-O3",
        "-lineinfo",
        "-gencode=arch=compute_90,code=sm_90",
        "--compiler-options=-fPIC",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        "-DTORCH_EXTENSION_NAME=autolora_lookahead",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        *(f"-I{p}" for p in includes),
    ]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the extension is built and run instead")
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (a CUDA toolkit)")
def test_cuda_sources_compile_for_sm90_without_a_gpu(tmp_path):
    """csrc/cuda/*.cu compiled as the first-use build on an H100 would (about 30 s). Nothing runs:
    this catches what the compiler refuses (types, templates, half/bf16 operators that torch's
    -D__CUDA_NO_HALF_OPERATORS__ flags remove), before a GPU session spends time on it."""
    import subprocess

    sources = sorted((_ext.csrc_dir() / "cuda").glob("*.cu"))
    assert sources
    flags = _nvcc_flags(tmp_path / "include")
    registered: set[bytes] = set()
    for src in sources:
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run(
            ["nvcc", "-c", str(src), "-o", str(obj), "-Xptxas=-v", *flags],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode and "cuda_runtime" in proc.stderr and "No such file" in proc.stderr:
            pytest.skip("nvcc found no CUDA runtime headers")
        assert proc.returncode == 0, proc.stderr[-3000:]
        spills = re.findall(r"(\d+) bytes spill stores", proc.stderr)
        assert spills and all(n == "0" for n in spills), f"{src.name}: register spills {spills}"
        registered.update(obj.read_bytes().split(b"\0"))  # C strings: the names given to m.impl
    missing = [op for op in _ext._OPS if op.encode() not in registered]
    assert not missing, f"ops without a CUDA kernel registration: {missing}"
