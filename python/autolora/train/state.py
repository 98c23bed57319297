"""Training-state checkpoints (not activation checkpointing, which is activation_checkpointing.py):
the trainable parameters, written atomically, so a kill never leaves a torn file."""

from __future__ import annotations

from pathlib import Path

import torch

from autolora.io.atomic import atomic_write


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save to a temporary file beside `path`, then rename it into place."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)
