"""Find AutoLoRA parts of a model by structure (module types), never by name substrings."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from autolora.nn.adapter import AutoLoraAdapter


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, layer) for every wrapping layer: FusedAutoLoraLinear or SlicedAutoLoraLinear."""
    from autolora.nn.layer import FusedAutoLoraLinear
    from autolora.nn.sliced import SlicedAutoLoraLinear

    for name, m in model.named_modules():
        if isinstance(m, (FusedAutoLoraLinear, SlicedAutoLoraLinear)):
            yield name, m


def adapters(model: nn.Module) -> Iterator[tuple[str, AutoLoraAdapter]]:
    """(name, adapter) for every AutoLoraAdapter, in module order."""
    for name, m in model.named_modules():
        if isinstance(m, AutoLoraAdapter):
            yield name, m


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The inner variables W of the bilevel problem: every U and V."""
    return [p for _, a in adapters(model) for p in (a.U, a.V)]


def inner_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable parameter but the betas: the adapters' U, V and any trainable head (the W of
    docs/METHOD.md section 3)."""
    betas = {id(p) for p in selection_parameters(model)}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in betas]


def selection_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The outer variables A: every beta (search-mode adapters only)."""
    return [a.beta for _, a in adapters(model) if a.beta is not None]


def current_ranks(model: nn.Module, policy=None) -> dict[str, int]:
    """Per adapter, the rank retraining would give it if the search ended now: what `policy` applies
    (autolora.tuner.allocation.RankPolicy; default: the library's rule and budget, as `autolora run`
    applies them), and a fixed adapter's own rank.

    Args:
        model: a model with AutoLoRA adapters.
        policy: a RankPolicy, or None for the defaults.

    Returns:
        {adapter name: rank}, in module order.
    """
    from autolora.tuner.allocation import RankPolicy
    from autolora.tuner.selection import policy_ranks

    ranks = {name: a.rank for name, a in adapters(model)}
    searched = [a for _, a in adapters(model) if a.beta is not None]
    if searched:
        policy = policy or RankPolicy.of(len(searched), max(a.rank for a in searched))
        ranks.update(policy_ranks(model, policy)[2])
    return ranks


def rank_summary(model: nn.Module, policy=None) -> list[dict]:
    """Per adapter: name, mode, k, alpha (list) and the rank of current_ranks(model, policy)."""
    ranks = current_ranks(model, policy)
    return [
        {
            "name": name,
            "mode": a.mode,
            "k": a.rank,
            "alpha": [round(float(v), 6) for v in a.alpha().detach().cpu()],
            "rank": ranks[name],
        }
        for name, a in adapters(model)
    ]


def format_rank_summary(model: nn.Module, policy=None) -> str:
    """A plain-text table of rank_summary(model, policy), one adapter a line."""
    rows = rank_summary(model, policy)
    width = max((len(r["name"]) for r in rows), default=4)
    lines = [f"{'adapter':<{width}}  rank/k  alpha"]
    for r in rows:
        alphas = " ".join(f"{v:.3f}" for v in r["alpha"])
        lines.append(f"{r['name']:<{width}}  {r['rank']:>2}/{r['k']:<3} {alphas}")
    return "\n".join(lines)


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
