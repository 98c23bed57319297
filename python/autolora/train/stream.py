"""Endless seeded batch streams: the search's own draws from D_tr and D_val, the same on every rank
and after a resume (the position is two integers)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class BatchStream:
    """Endless shuffled batches over a dataset; epoch e uses the permutation seeded by (seed, e).

    Each step draws one global batch of batch_size * world_size * accum examples from the
    permutation (wrapping to its start at the end of an epoch, so every rank always gets full
    micro-batches); this rank takes `accum` micro-batches of batch_size from it. With one process
    and no accumulation that is simply the next batch_size examples. The position is two integers,
    so a resumed run draws exactly the batches it would have drawn.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        collate: Callable,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        accum: int = 1,
    ):
        if len(dataset) == 0:
            raise ValueError("dataset: is empty")
        self.dataset, self.batch_size, self.collate = dataset, batch_size, collate
        self.seed, self.device = seed, device
        self.rank, self.world_size, self.accum = rank, world_size, accum
        self.epoch, self.index = 0, 0
        self._perm: tuple[int, torch.Tensor] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.accum

    def __len__(self) -> int:
        """Steps per epoch."""
        return math.ceil(len(self.dataset) / self.global_batch)

    def _order(self) -> torch.Tensor:
        if self._perm is None or self._perm[0] != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            self._perm = (self.epoch, torch.randperm(len(self.dataset), generator=g))
        return self._perm[1]

    def next(self) -> list[dict]:
        """This rank's micro-batches of the next global batch (a list of `accum` dicts)."""
        order, gb = self._order(), self.global_batch
        idx = order[self.index * gb : (self.index + 1) * gb]
        if len(idx) < gb:  # wrap: the epoch's last batch is topped up from its start
            idx = torch.cat([idx, order.repeat(math.ceil(gb / len(order)))[: gb - len(idx)]])
        self.index += 1
        if self.index >= len(self):
            self.epoch, self.index = self.epoch + 1, 0
        out = []
        for a in range(self.accum):
            start = (a * self.world_size + self.rank) * self.batch_size
            batch = self.collate([self.dataset[i] for i in idx[start : start + self.batch_size].tolist()])
            out.append({k: self._to_device(v) for k, v in batch.items()})
        return out

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A plain copy to a GPU waits for the device's queue; from pinned memory it is asynchronous
        (the pinned block is not reused until the copy is done)."""
        if self.device.type != "cuda":
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
