"""The learning rate along a training phase (options.RETRAIN_SCHEDULES): the one place it is built, for
the pipeline's retraining and the comparison's baselines (experiments/) alike."""

from __future__ import annotations

import torch

from autolora.options import RETRAIN_SCHEDULES


def lr_schedule(
    opt: torch.optim.Optimizer, name: str, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """None for "constant"; for "linear" a scheduler under which step n (from 0) of `steps` runs at
    lr * (1 - n / steps), stepped once after each optimiser step and checkpointed with the phase."""
    if name not in RETRAIN_SCHEDULES:
        raise ValueError(f"schedule: expected one of {RETRAIN_SCHEDULES}, got {name!r}")
    if steps < 1:
        raise ValueError(f"steps: expected >= 1 optimiser steps for the schedule, got {steps}")
    if name == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 1 - n / steps)
