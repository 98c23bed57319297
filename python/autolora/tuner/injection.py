"""Put AutoLoRA adapters into any Hugging Face model, all or nothing, and take them out again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from autolora.nn.base_layer import is_supported_base
from autolora.nn.layer import FusedAutoLoraLinear
from autolora.nn.sliced import SlicedAutoLoraLinear
from autolora.tuner.params import adapter_layers, adapters
from autolora.tuner.targets import FUSED_PARTS, Target, candidate_names, default_targets, name_matches


def _plan(model: nn.Module, targets: Sequence[Target]) -> dict[str, Target]:
    """Map each module name to the target it matches; every target must match something."""
    plan: dict[str, Target] = {}
    for target in targets:
        hits = [n for n, _ in model.named_modules() if n and target.matches(n)]
        if not hits:
            cands = candidate_names(model)
            raise ValueError(
                f"targets: {target.pattern!r} matches no module. Candidate module names: "
                f"{', '.join(cands[:40])}{' ...' if len(cands) > 40 else ''}"
            )
        for name in hits:
            plan.setdefault(name, target)
    modules = dict(model.named_modules())
    for name in plan:
        if not is_supported_base(modules[name]):
            raise TypeError(
                f"targets: module {name!r} is a {type(modules[name]).__name__}; "
                "only torch.nn.Linear and transformers' Conv1D can take an adapter"
            )
    return plan


def _build(name, base, target, rank, ranks, **kw) -> nn.Module:
    if target.parts is None:
        return FusedAutoLoraLinear(base, rank=int(ranks.get(name, rank)), **kw)
    layer_rank = {p: int(ranks.get(f"{name}.adapters.{p}", rank)) for p in target.parts}
    return SlicedAutoLoraLinear(base, FUSED_PARTS, target.parts, rank=layer_rank, **kw)


def inject(
    model: nn.Module,
    targets: Sequence[str] | None = None,
    *,
    rank: int = 8,
    lora_alpha: float = 16.0,
    dropout: float = 0.0,
    mode: str = "search",
    selection: str = "softmax",
    ranks: Mapping[str, int] | None = None,
    trainable: Sequence[str] = (),
) -> list[str]:
    """Wrap the target projections of `model` with AutoLoRA adapters, in place.

    Everything but the adapters and the `trainable` modules is frozen. Nothing changes unless every
    target matches and every adapter builds.

    Args:
        model: any torch module, e.g. a transformers model.
        targets: module patterns: an exact name, a suffix ("query"), a regex ("re:..."), or a fused
            projection with the parts to adapt ("c_attn[q,v]"); see autolora.tuner.targets. None
            picks the paper's q and v projections by model family.
        rank: k in search mode, r in fixed mode.
        lora_alpha: the scaling numerator: each update is scaled by lora_alpha / rank.
        dropout: probability of dropping an input of an adapter.
        mode: "search" (beta trainable) or "fixed".
        selection: "softmax" (the paper) or "sigmoid" (its ablation).
        ranks: per-adapter ranks overriding `rank`, keyed by adapter name (as
            `autolora.adapters(model)` yields them).
        trainable: patterns of modules left trainable besides the adapters (e.g. "classifier").

    Returns:
        The names of the wrapped modules.

    Raises:
        ValueError: the model has adapters already, or a target or trainable pattern matches no module.
    """
    kw = dict(lora_alpha=lora_alpha, dropout=dropout, mode=mode, selection=selection)
    built = build_adapters(model, targets, rank=rank, ranks=ranks, trainable=trainable, **kw)
    return attach_adapters(model, built, trainable)


def build_adapters(
    model: nn.Module,
    targets: Sequence[str] | None = None,
    *,
    rank: int = 8,
    ranks: Mapping[str, int] | None = None,
    trainable: Sequence[str] = (),
    **kw,
) -> dict[str, nn.Module]:
    """The adapter layers `inject` would put into `model`, built but not attached.

    The model keeps its modules and weights; only its targeted base layers are frozen (each adapter
    layer freezes the layer it wraps). Arguments as for `inject`; kw: lora_alpha, dropout, mode,
    selection.

    Returns:
        Module name -> the adapter layer wrapping that module.

    Raises:
        ValueError: as `inject`.
    """
    if any(True for _ in adapter_layers(model)):
        raise ValueError("model: already has AutoLoRA adapters; call autolora.unload(model) first")
    if isinstance(targets, str):
        targets = [targets]
    parsed = [Target.parse(t) for t in (targets if targets is not None else default_targets(model))]
    trainable = [trainable] if isinstance(trainable, str) else list(trainable)
    for pattern in trainable:
        if not any(name_matches([pattern], n) for n, _ in model.named_modules() if n):
            raise ValueError(f"trainable: {pattern!r} matches no module of the model")
    plan = _plan(model, parsed)
    modules = dict(model.named_modules())
    return {n: _build(n, modules[n], t, rank, dict(ranks or {}), **kw) for n, t in plan.items()}


def attach_adapters(
    model: nn.Module, built: Mapping[str, nn.Module], trainable: Sequence[str] = ()
) -> list[str]:
    """Put `build_adapters`' layers into `model` and freeze all but them and `trainable`; cannot fail.

    Returns:
        The names of the wrapped modules.
    """
    trainable = [trainable] if isinstance(trainable, str) else list(trainable)
    modules = dict(model.named_modules())
    for p in model.parameters():
        p.requires_grad_(False)
    for name, new in built.items():
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, new)
    for name, module in model.named_modules():
        if name and name_matches(trainable, name):
            for p in module.parameters():
                p.requires_grad_(True)
    for _, adapter in adapters(model):
        for p in adapter.parameters(recurse=False):
            p.requires_grad_(True)
    return list(built)


def merge(model: nn.Module) -> None:
    """Fold every adapter into its base weight (inference), in place.

    Args:
        model: a model with adapters (autolora.inject).
    """
    for _, layer in adapter_layers(model):
        layer.merge()


def unmerge(model: nn.Module) -> None:
    """Undo `merge`: subtract every adapter's update from its base weight again, in place.

    Args:
        model: a model whose adapters were merged.
    """
    for _, layer in adapter_layers(model):
        layer.unmerge()


def unload(model: nn.Module, merge_weights: bool = True) -> nn.Module:
    """Replace every adapter layer by its base layer, in place.

    Args:
        model: a model with adapters.
        merge_weights: fold each adapter into its base weight first; False drops the adapters.

    Returns:
        The same model, without adapter layers.
    """
    modules = dict(model.named_modules())
    for name, layer in list(adapter_layers(model)):
        if merge_weights:
            layer.merge()
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, layer.base_layer)
    return model
