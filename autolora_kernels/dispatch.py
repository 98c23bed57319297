"""Choosing between the fused Triton kernel and the composite path (cuBLAS + in-place low-rank update).

The fused kernel replaces cuBLAS for the frozen GEMM; on some shapes it may be the slower of the two.
Neither can be known in advance, so on CUDA, as cudnn.benchmark does, the first call of each bucket
(direction, device, tokens rounded up to a power of two, N, K, rank, dtype and the call's flags) times
both on the call's own inputs and keeps the faster for every later call; the composite wins ties.
AUTOLORA_KERNEL=fused|composite|auto (default auto) forces one of them.

The choice is made inside the custom ops' implementations (fused_linear.py), which torch.compile
treats as opaque: a compiled graph holds the op, not the choice, so timing and caching happen at run
time exactly as in eager mode and fullgraph=True sees no Python branch to break on.

`timer` is a module attribute so that tests can replace it with injected timings.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

KERNEL_ENV = "AUTOLORA_KERNEL"
MODES = ("auto", "fused", "composite")
FUSED, COMPOSITE = "fused", "composite"
REPEATS = 5  # timed calls per candidate after one untimed one (compiles, autotunes, warms caches)

log = logging.getLogger("autolora.kernels")


def kernel_mode() -> str:
    """AUTOLORA_KERNEL as one of MODES (unset or empty: auto); any other value is an error."""
    raw = os.environ.get(KERNEL_ENV, "")
    mode = raw.strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{KERNEL_ENV}: expected one of {', '.join(MODES)}, got {raw!r}")
    return mode


@dataclass(frozen=True)
class Choice:
    """The implementation kept for one bucket, with the median milliseconds that decided it."""

    name: str
    ms: dict[str, float]


_choices: dict[tuple, Choice] = {}


def token_bucket(m: int) -> int:
    """Tokens rounded up to a power of two (as the Triton autotune key M_BUCKET): a run whose batches
    vary in length times a handful of buckets, not every length."""
    return 1 << max(0, m - 1).bit_length()


def bucket(
    direction: str, device: torch.device | str, m: int, n: int, k: int, rank: int, dtype, **flags: bool
) -> tuple:
    """The cache key of a call on m tokens, x (m, k) -> y (m, n), rank `rank`, with its flags."""
    dtype_name = str(dtype).removeprefix("torch.")
    return (direction, str(device), token_bucket(m), n, k, rank, dtype_name, *sorted(flags.items()))


def cuda_time_ms(name: str, fn: Callable[[], object]) -> float:
    """Median of REPEATS calls of fn in milliseconds (CUDA events), after one untimed call.

    The calls reuse the call's own inputs: at small shapes they stay in L2 across the repeats, which
    flatters the composite's extra passes more than the fused kernel's single one (the safe side)."""
    fn()
    times = []
    for _ in range(REPEATS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


timer: Callable[[str, Callable[[], object]], float] = cuda_time_ms


def can_time(device: torch.device) -> bool:
    """Timing needs a CUDA device and no CUDA graph being captured (a sync would end the capture)."""
    return device.type == "cuda" and not torch.cuda.is_current_stream_capturing()


def choose(key: tuple, candidates: dict[str, Callable[[], object]], device: torch.device) -> str:
    """The candidate to run for `key`: the cached choice, else the fastest by `timer` (cached).

    Where nothing can be timed, nothing is cached: the Triton interpreter on the CPU (its times say
    nothing of a GPU) runs the fused kernel it is there to test; a CUDA graph capture the composite."""
    cached = _choices.get(key)
    if cached is not None:
        return cached.name
    if not can_time(device):
        return FUSED if device.type == "cpu" else COMPOSITE
    ms = {name: float(timer(name, fn)) for name, fn in candidates.items()}
    best = min(ms, key=lambda name: (ms[name], name != COMPOSITE))
    _choices[key] = Choice(best, ms)
    log.info("autolora: %s for %s (%s)", best, key, ", ".join(f"{n} {t:.3f} ms" for n, t in ms.items()))
    return best


def choices() -> list[dict]:
    """Every choice made so far in this process, for `autolora doctor`: key fields, choice, timings."""
    fields = ("direction", "device", "tokens_bucket", "n", "k", "rank", "dtype")
    made = []
    for key, c in _choices.items():
        head = dict(zip(fields, key[: len(fields)], strict=True))
        made.append({**head, "flags": dict(key[len(fields) :]), "choice": c.name, "ms": dict(c.ms)})
    return made


def reset() -> None:
    """Forget every choice (tests; or after changing clocks, drivers or the GPU's other load)."""
    _choices.clear()
