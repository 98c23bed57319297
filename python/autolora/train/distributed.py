"""The search's reduction across data-parallel ranks, under torchrun or `accelerate launch`.

The Trainer (accelerate) joins the process group and reduces retraining's gradients through DDP or
FSDP. The search differentiates with torch.autograd.grad, which DDP's reducer does not see, so the
bilevel step averages its own gradients, the lookahead direction v and beta's hypergradient with
`allreduce_mean_`: every replica takes the same steps and ends with the same ranks. A collective that
fails (a dead rank, a timeout) raises a DistributedError naming the rank instead of hanging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


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

    @classmethod
    def current(cls) -> DistContext:
        """This process's place in the process group the launcher (or accelerate) set up; one
        process when there is none."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

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

    def _collective(self, call, what: str) -> None:
        try:
            call()
        except Exception as err:  # gloo and NCCL raise several types; all mean the group is broken
            raise DistributedError(
                f"rank {self.rank}/{self.world_size}: {what} failed: another rank died or did not "
                f"answer within {self.timeout_s:g} s ({type(err).__name__}: {err})"
            ) from err
