"""The choice between the fused kernel and the composite path (autolora_kernels/dispatch.py).

On CUDA the op times both once per bucket and keeps the faster. Here the timings are injected (the
module's `timer` replaced) and timing is allowed on the CPU, where the fused candidate runs in
Triton's interpreter: what is tested is the cache, the keys, the env override and which
implementation runs, not a speed. Sizes are tiny (each interpreted program costs milliseconds).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.language is imported
INTERPRET = os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
    pytest.mark.skipif(CUDA, reason="injects timings on the CPU; on CUDA the real timer runs"),
    pytest.mark.skipif(not INTERPRET, reason="triton was imported before TRITON_INTERPRET=1"),
]

from autolora import doctor  # noqa: E402
from autolora_kernels import autolora_linear, composite_linear, dispatch  # noqa: E402
from autolora_kernels import fused_linear_launch as kern  # noqa: E402


@pytest.fixture
def timings(monkeypatch):
    """Timing allowed on the CPU, an empty cache, counted implementations, and a fake timer whose
    milliseconds per candidate the test sets: returns (ms, timed, ran)."""
    for name in ("AUTOLORA_FORCE_REFERENCE", "AUTOLORA_KERNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOLORA_TRITON_ON_CPU", "1")
    monkeypatch.setattr(dispatch, "can_time", lambda device: True)
    monkeypatch.setattr(dispatch, "_choices", {})
    ms = {"fused": 1.0, "composite": 2.0}
    timed: list[str] = []

    def fake_timer(name, fn):
        timed.append(name)
        return ms[name]

    monkeypatch.setattr(dispatch, "timer", fake_timer)
    ran: list[str] = []
    for module, prefix, label in (
        (kern, "fused_linear_", "fused"),
        (composite_linear, "composite_linear_", "composite"),
    ):
        for direction in ("forward", "backward"):
            fn = getattr(module, prefix + direction)

            def wrapper(*args, _fn=fn, _tag=f"{label} {direction}", **kwargs):
                ran.append(_tag)
                return _fn(*args, **kwargs)

            monkeypatch.setattr(module, prefix + direction, wrapper)
    return ms, timed, ran


def step(m: int, dtype=torch.float32, rank: int = 2, conv1d: bool = False):
    """One forward + backward of the op on m tokens (K = 6, N = 7); returns y."""
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, 6, generator=g).to(dtype).requires_grad_()
    w = torch.randn(6, 7, generator=g) if conv1d else torch.randn(7, 6, generator=g)
    U = torch.randn(7, rank, generator=g).to(dtype).requires_grad_()
    V = torch.randn(rank, 6, generator=g).to(dtype).requires_grad_()
    beta = torch.randn(rank, generator=g, requires_grad=True)
    y = autolora_linear(x, w.to(dtype), None, U, V, beta, 2.0, conv1d=conv1d)
    y.float().square().sum().backward()
    return y


def test_first_use_times_both_then_the_cache_answers(timings):
    ms, timed, ran = timings
    step(5)
    # forward, then backward: each bucket timed once per candidate, then the faster one runs
    assert timed == ["fused", "composite", "fused", "composite"]
    assert ran == ["fused forward", "fused backward"]
    timed.clear(), ran.clear()
    step(7)  # 7 tokens: the same power-of-two bucket as 5
    assert timed == [] and ran == ["fused forward", "fused backward"]
    assert [c["choice"] for c in dispatch.choices()] == ["fused", "fused"]


def test_composite_kept_when_faster_or_tied(timings):
    ms, timed, ran = timings
    ms.update(fused=3.0, composite=2.0)
    step(5)
    assert ran == ["composite forward", "composite backward"]
    dispatch.reset()
    ms.update(fused=2.0)  # a tie: the composite, never slower than itself
    ran.clear()
    step(5)
    assert ran == ["composite forward", "composite backward"]


@pytest.mark.parametrize(
    "change", [dict(m=9), dict(dtype=torch.float16), dict(rank=3), dict(conv1d=True)], ids=str
)
def test_bucket_keys(timings, change):
    """Tokens (to the next power of two), dtype, rank and layout each start a bucket of their own."""
    ms, timed, ran = timings
    step(5)
    timed.clear()
    step(**{"m": 5, **change})
    assert timed == ["fused", "composite", "fused", "composite"]
    assert len(dispatch.choices()) == 4


def test_bucket_key_fields():
    key = dispatch.bucket("forward", torch.device("cuda", 0), 3000, 768, 1024, 8, torch.bfloat16, conv1d=True)
    assert key == ("forward", "cuda:0", 4096, 768, 1024, 8, "bfloat16", ("conv1d", True))
    cuda0 = torch.device("cuda", 0)
    assert dispatch.bucket("forward", cuda0, 4096, 768, 1024, 8, torch.bfloat16, conv1d=True) == key
    assert dispatch.bucket("forward", cuda0, 4097, 768, 1024, 8, torch.bfloat16, conv1d=True)[2] == 8192


@pytest.mark.parametrize("mode", ["fused", "composite", " Composite "])
def test_env_forces_one_path_without_timing(timings, monkeypatch, mode):
    ms, timed, ran = timings
    monkeypatch.setenv("AUTOLORA_KERNEL", mode)
    step(5)
    name = mode.strip().lower()
    assert timed == [] and ran == [f"{name} forward", f"{name} backward"]
    assert dispatch.choices() == []


def test_bad_env_value_fails_before_anything_runs(timings, monkeypatch):
    ms, timed, ran = timings
    monkeypatch.setenv("AUTOLORA_KERNEL", "cublas")
    with pytest.raises(
        ValueError, match="AUTOLORA_KERNEL: expected one of auto, fused, composite, got 'cublas'"
    ):
        step(5)
    assert timed == [] and ran == []


def test_nothing_timed_where_timing_is_impossible(timings, monkeypatch):
    """Without a GPU to time on (the interpreter), auto runs the fused kernel and caches nothing."""
    ms, timed, ran = timings
    monkeypatch.setattr(dispatch, "can_time", lambda device: False)
    step(5)
    assert timed == [] and ran == ["fused forward", "fused backward"] and dispatch.choices() == []


def test_doctor_prints_the_choices(timings):
    text = doctor.format_description(doctor.describe())
    assert "kernels:    AUTOLORA_KERNEL=auto; no choice made yet" in text
    step(5)
    text = doctor.format_description(doctor.describe())
    assert "2 choice(s) made" in text
    assert "forward  cpu tokens<=8 N=7 K=6 r=2 float32" in text
    assert "backward cpu tokens<=8 N=7 K=6 r=2 float32" in text
    assert ": fused (fused 1.000 ms, composite 2.000 ms)" in text


@pytest.mark.slow
def test_compile_fullgraph_with_the_dispatcher(timings):
    """The choice happens inside the op at run time: a fullgraph compile traces the op, then the
    first compiled call times and caches, the second reuses the cache."""
    from autolora import FusedAutoLoraLinear

    ms, timed, ran = timings
    torch._dynamo.reset()
    layer = torch.compile(
        FusedAutoLoraLinear(torch.nn.Linear(6, 7), rank=2), fullgraph=True, backend="aot_eager"
    )
    layer(torch.randn(5, 6, requires_grad=True)).sum().backward()
    assert timed == ["fused", "composite", "fused", "composite"]
    timed.clear()
    layer(torch.randn(6, 6, requires_grad=True)).sum().backward()
    assert timed == [] and ran[-2:] == ["fused forward", "fused backward"]
