"""Sizes checked against the model before any training: k against the targeted modules' widths,
data.max_length against the model's positions.

Neither fails at build time by itself. A k above a module's width builds and trains, but an update of
that module has at most min(in, out) independent components, so the search ranks components that
cannot differ. A max_length above the position table passes every check and fails mid-run, at the
first example that long (an index error in the position embedding).
"""

from __future__ import annotations

from torch import nn

from autolora.errors import InputError
from autolora.tuner.params import adapters

# Learned absolute position tables: BERT/RoBERTa (position_embeddings), GPT-2 (wpe), OPT/BART
# (embed_positions). Rotary and relative positions have no table, and no hard limit.
POSITION_TABLES = ("position_embeddings", "wpe", "embed_positions")


def narrowest_target(model: nn.Module) -> tuple[str, int, int] | None:
    """(adapter name, in features, out features) of the adapter whose min(in, out) is smallest, or
    None when the model has no adapters. An adapter's U is (out, k), its V (k, in)."""
    widths = [
        (min(a.U.shape[0], a.V.shape[1]), name, a.V.shape[1], a.U.shape[0]) for name, a in adapters(model)
    ]
    if not widths:
        return None
    _, name, fan_in, fan_out = min(widths)
    return name, fan_in, fan_out


def max_positions(model: nn.Module) -> tuple[int, str] | None:
    """(the longest input the model's position table takes, where that number comes from), or None
    when the model has no learned position table (rotary or relative positions)."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.split(".")[-1] in POSITION_TABLES:
            rows = module.num_embeddings
            # RoBERTa numbers positions from padding_idx + 1: 514 rows hold 512 positions.
            usable = rows - (module.padding_idx + 1 if module.padding_idx is not None else 0)
            if limit is not None and limit < usable:
                return limit, f"max_position_embeddings / n_positions = {limit}"
            offset = f", {rows - usable} taken by the padding offset" if usable < rows else ""
            return usable, f"its position table {name} has {rows} rows{offset}"
    return None


def check_fits(model: nn.Module, k: int | None, max_length: int | None) -> None:
    """Check k and max_length against a model with its adapters in (after `autolora.inject`).

    Args:
        model: the model as a run builds it: loaded, adapters injected, not yet trained.
        k: the search's components per adapter (`k`); None skips this check.
        max_length: the longest tokenized example (`data.max_length`); None skips this check.

    Raises:
        InputError: `k` above the smallest in/out width among the targeted modules, or
            `data.max_length` above the model's positions.
    """
    target = narrowest_target(model) if k is not None else None
    if target is not None:
        name, fan_in, fan_out = target
        width = min(fan_in, fan_out)
        if k > width:
            raise InputError(
                "k",
                f"{k} is above the smallest in/out width among the targeted modules: {name} has in "
                f"{fan_in}, out {fan_out}, so its update has at most {width} independent components; "
                f"set k <= {width}",
            )
    positions = max_positions(model) if max_length is not None else None
    if positions is not None and max_length > positions[0]:
        raise InputError(
            "data.max_length",
            f"{max_length} is above the {positions[0]} positions the model takes ({positions[1]}); "
            f"set data.max_length <= {positions[0]}",
        )
