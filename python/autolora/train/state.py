"""Training-state checkpoints (not activation checkpointing, which is activation_checkpointing.py):
the trainable parameters, written atomically, so a kill never leaves a torn file."""

from __future__ import annotations

from pathlib import Path

import torch

from autolora.errors import InputError
from autolora.io.atomic import atomic_write


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save to a temporary file beside `path`, then rename it into place."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict | None:
    """The state `save_checkpoint` wrote to `path`, on the CPU; None when there is no such file.

    Raises:
        InputError: `resume`: the file is corrupt or truncated (copied half, written by something
            else), or holds no checkpoint. Deleting it starts that phase afresh.
    """
    path = Path(path)
    if not path.exists():
        return None
    fix = "delete it to start that phase afresh"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (PermissionError, IsADirectoryError, MemoryError):
        raise  # the file may be fine: not ours to call corrupt
    except Exception as err:  # torch.load fails on a torn file as OSError, RuntimeError, EOFError,
        # UnpicklingError or KeyError, depending on where the bytes stop
        first = str(err).splitlines()[0].split(". ")[0] if str(err) else "no detail"  # miniz says more
        reason = f"{type(err).__name__}: {first}"
        raise InputError("resume", f"corrupt or truncated ({reason}); {fix}", path=str(path)) from err
    if not isinstance(state, dict):
        raise InputError(
            "resume", f"holds a {type(state).__name__}, not a training checkpoint; {fix}", path=str(path)
        )
    return state


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)
