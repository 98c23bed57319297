"""Shard the frozen base of a model with adapters over data-parallel ranks (FSDP2), keep W and A whole.

The base weights (embeddings, every transformer block) are the bulk of the memory and never change,
so `shard_frozen_base` splits them over the ranks with `torch.distributed.fsdp.fully_shard`: each
block all-gathers its weights just before its forward (and again for the backward) and frees them
after. Every trainable parameter (the adapters' U, V and beta, a trainable head) is passed as
`ignored_params`: it stays an ordinary, whole tensor replicated on every rank, so the search's
`torch.autograd.grad`, its virtual step on W and the lookahead kernels see the same tensors as in one
process, and `DistContext.allreduce_mean_` (BilevelSearch's `reduce`) averages their gradients.
FSDP reduces no gradient here: the parameters it manages have none.

Retraining (fixed-rank adapters, a plain optimizer step) needs no whole tensors: with
`shard_trainable=True` FSDP manages the adapters and the head too, and its reduce-scatter averages
their gradients across ranks (no hand-written all-reduce); the optimizer steps each rank's shard.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

# The hypergradients that cannot run with a sharded base, and why.
UNSHARDABLE = {
    "exact": (
        "it differentiates through the lookahead's gradient (create_graph), and that second backward "
        "needs the base weights the first backward already freed back to their shards; use "
        "'second-order' (finite differences, first-order passes only)"
    ),
}


def check_shardable(hypergradient: str) -> None:
    """Fail early on what cannot run with a sharded base (before any process group work).

    Args:
        hypergradient: the search's hypergradient (SearchStepConfig.hypergradient).

    Raises:
        ValueError: `hypergradient` is one of UNSHARDABLE, with the reason and what to use instead.
    """
    if hypergradient in UNSHARDABLE:
        raise ValueError(
            f"fsdp: hypergradient {hypergradient!r} cannot run with a sharded base: "
            f"{UNSHARDABLE[hypergradient]}"
        )


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: the items of its largest nn.ModuleList (BERT's encoder.layer,
    GPT-2's h, Llama's layers), found by structure rather than by name.

    Args:
        model: a transformers model (or any module with its layers in an nn.ModuleList).

    Returns:
        The blocks, in order; empty when the model has no ModuleList.
    """
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return []
    return list(max(lists, key=lambda m: sum(p.numel() for p in m.parameters())))


def shard_frozen_base(
    model: nn.Module, mesh=None, reshard_after_forward: bool = True, shard_trainable: bool = False
) -> nn.Module:
    """Shard every frozen parameter of `model` over the data-parallel ranks; leave the trainable ones whole.

    `fully_shard` goes on each transformer block (one all-gather per block) and then on the root,
    which takes what is left (embeddings, pooler, final norm). Tied weights (an LM head sharing the
    input embeddings) stay together in the root's group. Call after `autolora.inject` (which decides
    what is trainable) and after the process group is up; all ranks must hold the same weights.

    Args:
        model: a model with adapters injected (autolora.inject), on this rank's device.
        mesh: a 1-D DeviceMesh of the data-parallel ranks; None: every rank of the default group.
        reshard_after_forward: free each block's gathered weights after its forward (and gather them
            again for its backward): the least memory. False keeps them from forward to backward.
        shard_trainable: also shard the trainable parameters, whose gradients FSDP then averages
            across ranks (retraining). False (the search) leaves them whole and replicated: their
            gradients are the caller's to average (BilevelSearch's `reduce`).

    Returns:
        The same model, in place; its frozen parameters (and the trainable ones with
        shard_trainable) are now DTensors, one shard per rank.

    Raises:
        ValueError: the process group is not initialised, the model has no trainable parameter, or
            it is sharded already.
    """
    from torch.distributed.fsdp import fully_shard

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("fsdp: the process group is not initialised (run under torchrun or accelerate)")
    if any(isinstance(p, DTensor) for p in model.parameters()):
        raise ValueError("model: already sharded (it holds DTensor parameters); shard it once")
    trainable = {p for p in model.parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("model: no trainable parameter; inject adapters (autolora.inject) before sharding")
    kw = dict(mesh=mesh, reshard_after_forward=reshard_after_forward)
    kw["ignored_params"] = None if shard_trainable else trainable
    for block in transformer_blocks(model):
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    return model


def shard_for_trainer(model: nn.Module, hypergradient: str = "second-order") -> nn.Module:
    """Shard the frozen base for transformers.Trainer (AutoLoraTrainer): torch and transformers then
    average the trainable parameters' gradients, not autolora.

    Marks the model as transformers marks one sharded at load time (`from_pretrained(...,
    distributed_config=...)`): the Trainer then neither wraps it in DDP (accelerate refuses DTensor
    parameters in DDP, and on CPU ignores `TrainingArguments(fsdp=...)`) nor moves it, broadcasts every
    whole trainable parameter from rank 0 and averages its gradient after each accumulation window
    (`Trainer._sync_replicated_trainable_parameters`). Call after TrainingArguments exist (they start
    the process group) and before the Trainer is built.

    Args:
        model: a model with adapters injected (autolora.inject).
        hypergradient: the search's hypergradient, checked by check_shardable.

    Returns:
        The same model, sharded in place (shard_frozen_base) and marked.

    Raises:
        ValueError: from check_shardable or shard_frozen_base.
    """
    check_shardable(hypergradient)
    shard_frozen_base(model)
    # The flag transformers' Trainer reads (PreTrainedModel.is_distributed_loading_by_transformers).
    model._is_distributed_loading_by_transformers = True
    return model


def local_parameter_bytes(model: nn.Module, trainable: bool = False) -> int:
    """Bytes of parameters this rank holds: the local shard of a sharded one, all of a whole one.

    Args:
        model: any model, sharded or not.
        trainable: count the trainable parameters (True) or the frozen ones (False).

    Returns:
        The sum over the parameters of local elements times element size.
    """
    total = 0
    for p in model.parameters():
        if p.requires_grad == trainable:
            local = p.to_local() if isinstance(p, DTensor) else p
            total += local.numel() * local.element_size()
    return total


def unshard_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on every rank (each sharded tensor gathered), for saving or comparing.

    Args:
        model: a model, sharded by shard_frozen_base or not.

    Returns:
        name -> an ordinary tensor with the parameter's full shape.
    """
    out = {}
    for name, t in model.state_dict().items():
        out[name] = t.full_tensor() if isinstance(t, DTensor) else t
    return out
