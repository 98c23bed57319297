"""Data parallelism for the search and the retraining, under torchrun or `accelerate launch`.

Both launchers export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with WORLD_SIZE
above 1 the pipeline joins the process group (NCCL on GPUs, gloo on CPUs). Every rank holds the
whole model; the adapter gradients, the lookahead direction v and the beta hypergradients are
averaged across ranks, so every replica takes the same steps and ends with the same ranks.
Collectives time out (`dist_timeout` seconds), so a dead rank makes the others fail with a
DistributedError naming the rank instead of hanging forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from autolora.devices import resolve_device


class DistributedError(RuntimeError):
    """A collective failed: another rank died, or did not answer within the timeout."""


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 1800.0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def allreduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average the tensors across ranks in place, in one collective (one flat fp32 buffer)."""
        if not self.enabled or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        self._collective(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM), "all-reduce")
        flat /= self.world_size
        offset = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Copy rank 0's values into every rank's tensors (identical starting points)."""
        if not self.enabled:
            return
        for t in tensors:
            self._collective(lambda t=t: dist.broadcast(t.data, src=0), "broadcast")

    def barrier(self) -> None:
        if self.enabled:
            self._collective(dist.barrier, "barrier")

    def _collective(self, call, what: str) -> None:
        try:
            call()
        except Exception as err:  # gloo and NCCL raise several types; all mean the group is broken
            raise DistributedError(
                f"rank {self.rank}/{self.world_size}: {what} failed: another rank died or did not "
                f"answer within {self.timeout_s:g} s ({type(err).__name__}: {err})"
            ) from err


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> tuple[DistContext, torch.device]:
    """Join the launcher's process group if WORLD_SIZE > 1; returns the context and this rank's device.

    Raises:
        InputError: `device` is one this machine cannot run (autolora.devices.resolve_device).
    """
    resolved = resolve_device(device)  # first: "cuda" without CUDA fails here, named, not at .to()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = resolved.type == "cuda"
    if world <= 1:
        return DistContext(), resolved
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
        )
    return DistContext(rank, world, local_rank, timeout_s), dev


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
