"""Which search steps move beta. The pipeline and AutoLoraTrainer read the same rule.

A search step either runs the whole bilevel iteration (W and beta move) or W's step alone: with
hypergradient "none", during beta's warm-up (at LoRA's init U = 0 every hypergradient of beta is 0),
and, with beta_every = m > 1, on the steps between beta's (docs/METHOD.md section 4: not the paper's,
a cost lever; m = 1 is the paper's)."""

from __future__ import annotations

from autolora.options import BETA_EVERY


def beta_moves(done: int, hypergradient: str, warmup_steps: int = 0, every: int = BETA_EVERY) -> bool:
    """Whether search step `done` (0-based: the steps finished before it) takes beta's step too."""
    return hypergradient != "none" and done >= warmup_steps and (done - warmup_steps) % every == 0
