"""RNG capture and replay: the one place the generators' state is read and written back.

The search replays one captured state before every pass over the same training batch, so dropout
draws the same masks (otherwise mask noise divided by the finite-difference step swamps the
second-order signal); training-state checkpoints store the same capture so a resumed phase draws
what an uninterrupted one would.
"""

from __future__ import annotations

import torch


def rng_state(device: torch.device | None = None) -> dict:
    """The CPU generator's state and CUDA's: of `device` alone when one is given (nothing for a CPU
    device), else of every visible GPU."""
    state: dict = {"cpu": torch.get_rng_state()}
    if device is None:
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
    elif device.type == "cuda":
        state["cuda_device"] = (device, torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict) -> None:
    """Put back what `rng_state` captured."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state:
        device, cuda = state["cuda_device"]
        torch.cuda.set_rng_state(cuda, device)


class RngReplay:
    """Capture the RNG state once, replay it before each pass that must see the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.state = rng_state(torch.device(device))

    def replay(self) -> None:
        set_rng_state(self.state)
