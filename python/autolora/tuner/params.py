"""Find AutoLoRA parts of a model by structure (module types), never by name substrings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from torch import nn

from autolora.nn.adapter import AutoLoraAdapter

if TYPE_CHECKING:  # imported where used: autolora.tuner.selection imports this module
    from autolora.tuner.allocation import RankPolicy


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every wrapping layer (FusedAutoLoraLinear or SlicedAutoLoraLinear), in module order.

    Args:
        model: a model with adapters (autolora.inject).

    Returns:
        An iterator of (module name, layer).
    """
    from autolora.nn.layer import FusedAutoLoraLinear
    from autolora.nn.sliced import SlicedAutoLoraLinear

    for name, m in model.named_modules():
        if isinstance(m, (FusedAutoLoraLinear, SlicedAutoLoraLinear)):
            yield name, m


def adapters(model: nn.Module) -> Iterator[tuple[str, AutoLoraAdapter]]:
    """Every AutoLoraAdapter, in module order (a SlicedAutoLoraLinear holds one per adapted part).

    Args:
        model: a model with adapters (autolora.inject).

    Returns:
        An iterator of (adapter name, adapter); the names key `ranks` and ranks.json.
    """
    for name, m in model.named_modules():
        if isinstance(m, AutoLoraAdapter):
            yield name, m


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' weights: every U and V.

    Args:
        model: a model with adapters (autolora.inject).

    Returns:
        The U and V of each adapter, in module order.
    """
    return [p for _, a in adapters(model) for p in (a.U, a.V)]


def inner_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The inner variables W of the bilevel problem (docs/METHOD.md section 3).

    Args:
        model: a model with adapters (autolora.inject).

    Returns:
        Every trainable parameter but the betas: the adapters' U, V and any trainable head.
    """
    betas = {id(p) for p in selection_parameters(model)}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in betas]


def selection_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The outer variables A of the bilevel problem.

    Args:
        model: a model with adapters (autolora.inject).

    Returns:
        Every beta, each of shape (k,) (search-mode adapters only).
    """
    return [a.beta for _, a in adapters(model) if a.beta is not None]


def current_ranks(model: nn.Module, policy: RankPolicy | None = None) -> dict[str, int]:
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


def rank_summary(model: nn.Module, policy: RankPolicy | None = None) -> list[dict]:
    """What each adapter holds now.

    Args:
        model: a model with adapters (autolora.inject).
        policy: a RankPolicy, or None for the defaults (as `current_ranks`).

    Returns:
        One dict per adapter: name, mode, k, alpha (a list of k floats) and rank (as `current_ranks`).
    """
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


def format_rank_summary(model: nn.Module, policy: RankPolicy | None = None) -> str:
    """`rank_summary` as a plain-text table.

    Args:
        model: a model with adapters (autolora.inject).
        policy: a RankPolicy, or None for the defaults (as `current_ranks`).

    Returns:
        One line per adapter (its name, rank/k and alphas) under a header line.
    """
    rows = rank_summary(model, policy)
    width = max((len(r["name"]) for r in rows), default=4)
    lines = [f"{'adapter':<{width}}  rank/k  alpha"]
    for r in rows:
        alphas = " ".join(f"{v:.3f}" for v in r["alpha"])
        lines.append(f"{r['name']:<{width}}  {r['rank']:>2}/{r['k']:<3} {alphas}")
    return "\n".join(lines)


def count_trainable(model: nn.Module) -> int:
    """The number of trainable parameters.

    Args:
        model: any torch module.

    Returns:
        The elements of every parameter with requires_grad.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
