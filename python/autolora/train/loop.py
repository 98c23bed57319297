"""A resumable training phase: deterministic batch streams, atomic checkpoints, a NaN/inf guard.

Between logging steps nothing is read on the host: a step's losses and readings stay on the device
(on a GPU each read waits for the whole queue of kernels), and every `log_every` steps (and at
checkpoint steps and the last step) they come to the host in one transfer, are checked, recorded,
shown and judged by the stop rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from autolora.search.rng import rng_state, set_rng_state
from autolora.train.state import load_checkpoint, save_checkpoint


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the last good checkpoint stays on disk."""


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


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in state.items():
        params[name].copy_(value)


def to_host(values: list[torch.Tensor | float]) -> list[torch.Tensor]:
    """Tensors (and Python numbers) on the host as fp64, in one device-to-host transfer.

    Args:
        values: tensors of any shape on one device; numbers join them there.

    Returns:
        CPU fp64 tensors of the same shapes, in order.
    """
    if not values:
        return []
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    tensors = [torch.as_tensor(v, dtype=torch.float64, device=device).detach() for v in values]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu()  # one copy, not one per tensor
    parts = flat.split([t.numel() for t in tensors])
    return [part.view(t.shape) for part, t in zip(parts, tensors, strict=True)]


def run_phase(
    *,
    name: str,
    total_steps: int,
    step_fn: Callable[[int], dict[str, torch.Tensor | float]],
    model: torch.nn.Module,
    stateful: dict,
    checkpoint: Path | None,
    checkpoint_every: int,
    history: list,
    on_step: Callable[[int, dict, torch.Tensor | None], dict] | None = None,
    observe: Callable[[], torch.Tensor] | None = None,
    log_every: int = 1,
    log_at: Callable[[int], bool] | None = None,
    progress: bool = True,
    is_main: bool = True,
    stop: Callable[[list], bool] | None = None,
) -> list:
    """Run step_fn until total_steps, resuming from `checkpoint` if it holds this phase.

    step_fn(done) takes step done + 1 (done: the steps finished before it) and returns its losses,
    0-d tensors left on the device (or numbers). observe() returns what is read of the state after
    each step (a 1-d tensor, kept on the device). At logging steps (every log_every steps, at
    checkpoint steps, at the last step and where log_at(step) is True) the pending losses and readings
    come to the host in one transfer (`to_host`); a non-finite loss raises NonFiniteLoss naming the
    first bad step; on_step(step, losses, readings) then returns each pending step's record (with
    host losses, readings None without observe), appended to history and shown on the progress bar.
    stop(history) ends the phase when it returns True: judged once after each logging step (and on
    resume, so a phase that stopped stays stopped).

    stateful: objects with state_dict/load_state_dict (optimisers, batch streams) saved alongside
    the trainable parameters, the RNG state and `history` (complete up to the checkpoint's step: a
    checkpoint step is a logging step). Under data parallelism every rank runs this loop; only the
    main rank (is_main) writes checkpoints and shows progress, and every rank resumes from the same
    file.
    """
    if log_every < 1:
        raise ValueError(f"log_every: expected >= 1, got {log_every}")
    start = 0
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    if saved is not None and saved.get("phase") == name:
        missing = sorted(set(stateful) - set(saved["state"]))
        if missing:
            raise ValueError(
                f"resume: {checkpoint} holds no {', '.join(missing)} state: it was written with other "
                "options; resume with the options it was written with (config.json), or start afresh"
            )
        load_trainable_state(model, saved["params"])
        for key, obj in stateful.items():
            obj.load_state_dict(saved["state"][key])
        set_rng_state(saved["rng"])
        history[:] = saved["history"]
        start = saved["step"]

    def save(step: int) -> None:
        if checkpoint is not None and is_main:
            state = {k: obj.state_dict() for k, obj in stateful.items()}
            save_checkpoint(
                checkpoint,
                {
                    "phase": name,
                    "step": step,
                    "params": trainable_state(model),
                    "state": state,
                    "rng": rng_state(),
                    "history": list(history),
                },
            )

    bar = tqdm(
        total=total_steps, initial=start, desc=name, disable=not (progress and is_main), dynamic_ncols=True
    )
    pending: list[tuple[int, dict, torch.Tensor | None]] = []  # (step, losses, readings) on the device

    def flush() -> None:
        """The pending steps' records, from one host transfer; raises on the first non-finite loss."""
        values = [v for _, losses, _ in pending for v in losses.values()]
        readings = [r for _, _, r in pending if r is not None]
        host = to_host(values + readings)
        losses_host, readings_host = iter(host[: len(values)]), iter(host[len(values) :])
        for step, losses, reading in pending:
            read = {k: float(next(losses_host)) for k in losses}
            bad = {k: v for k, v in read.items() if not math.isfinite(v)}
            if bad:
                bar.close()
                kept = f"; the last good checkpoint {checkpoint} is kept" if checkpoint is not None else ""
                raise NonFiniteLoss(f"{name}: non-finite loss {bad} at step {step}{kept}")
            reading = None if reading is None else next(readings_host)
            history.append(on_step(step, read, reading) if on_step else {"step": step, **read})
        pending.clear()
        bar.set_postfix({k: v for k, v in history[-1].items() if k != "step" and isinstance(v, (int, float))})

    stopped = stop is not None and stop(history)  # on resume: a phase that stopped stays stopped
    done = start
    while done < total_steps and not stopped:
        losses = step_fn(done)
        done += 1
        pending.append((done, losses, observe() if observe else None))
        bar.update(1)
        saving = done % checkpoint_every == 0 or done == total_steps
        if saving or done % log_every == 0 or (log_at is not None and log_at(done)):
            flush()
            stopped = stop is not None and stop(history)
            if saving or stopped:
                save(done)
    bar.close()
    return history
