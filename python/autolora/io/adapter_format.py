"""Save and load AutoLoRA adapters: safetensors weights plus a small JSON config."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from autolora.io.atomic import atomic_write, atomic_write_json
from autolora.nn.sliced import SlicedAutoLoraLinear
from autolora.tuner.injection import attach_adapters, build_adapters
from autolora.tuner.params import adapter_layers, adapters
from autolora.tuner.pooling import mean_pooling, pooling_of
from autolora.tuner.targets import name_matches

WEIGHTS_NAME = "autolora_adapter.safetensors"
CONFIG_NAME = "autolora_config.json"
FORMAT_VERSION = 1


def adapter_config(model: nn.Module, trainable: list[str] | tuple[str, ...] = ()) -> dict:
    """Everything needed to rebuild the adapters of `model` on a fresh copy of the base model.

    Args:
        model: a model with adapters.
        trainable: patterns of modules trained beside the adapters (e.g. "classifier"), whose
            parameters are saved too.

    Returns:
        The JSON-able contents of autolora_config.json: targets, mode, selection, lora_alpha,
        dropout, per-adapter ranks, trainable patterns and pooling.

    Raises:
        ValueError: the model has no adapters.
    """
    targets = []
    for name, layer in adapter_layers(model):
        targets.append(
            f"{name}[{','.join(layer.adapters)}]" if isinstance(layer, SlicedAutoLoraLinear) else name
        )
    all_adapters = list(adapters(model))
    if not all_adapters:
        raise ValueError("model: has no AutoLoRA adapters to save")
    first = all_adapters[0][1]
    return {
        "format": "autolora",
        "version": FORMAT_VERSION,
        "targets": targets,
        "mode": first.mode,
        "selection": first.selection,
        "lora_alpha": first.lora_alpha,
        "dropout": float(getattr(first.dropout, "p", 0.0)),
        "ranks": {name: a.rank for name, a in all_adapters},
        "trainable": list(trainable),
        "pooling": pooling_of(model),
    }


def adapter_state_dict(
    model: nn.Module, trainable: list[str] | tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """The tensors that `save_adapter` writes.

    Args:
        model: a model with adapters.
        trainable: patterns of modules trained beside the adapters (e.g. "classifier"), whose
            parameters are saved too.

    Returns:
        Parameter name -> tensor (detached, not copied): each adapter's U: (out, r), V: (r, in) and
        beta: (r,) in search mode, and every parameter of the trainable modules.
    """
    state = {}
    for name, a in adapters(model):
        for pname, p in a.named_parameters(recurse=False):
            state[f"{name}.{pname}"] = p.detach()
    for mname, module in model.named_modules():
        if mname and name_matches(trainable, mname):
            for pname, p in module.named_parameters():
                state[f"{mname}.{pname}"] = p.detach()
    return state


def save_adapter(
    model: nn.Module, directory: str | Path, trainable: list[str] | tuple[str, ...] = ()
) -> Path:
    """Save the adapters in autolora's format: autolora_adapter.safetensors and autolora_config.json.

    Each file is written atomically. Every mode is saved (search mode's beta included), so
    `load_adapter` restores the model exactly.

    Args:
        model: a model with adapters.
        directory: created if missing.
        trainable: patterns of modules trained beside the adapters (e.g. "classifier"), whose
            parameters are saved too.

    Returns:
        The directory.

    Raises:
        ValueError: the model has no adapters.
    """
    directory = Path(directory)
    config = adapter_config(model, trainable)
    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model, trainable).items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_json(directory / CONFIG_NAME, config)
    return directory


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Load adapters saved by `save_adapter` into `model`, in place.

    Injects the adapters as saved (unless the model has them already), applies mean pooling if it
    was saved with it, and copies the saved tensors. Every saved name and shape is checked first: a
    load that fails leaves the model as it was.

    Args:
        model: the base model the adapters were trained on (a fresh copy), or one with the same
            adapters.
        directory: what `save_adapter` wrote.

    Returns:
        The same model.

    Raises:
        ValueError: the directory holds no autolora adapter of this format version, or a saved
            tensor's shape differs from the model's.
        KeyError: a saved tensor names no parameter of the model.
    """
    directory = Path(directory)
    config = json.loads((directory / CONFIG_NAME).read_text())
    if config.get("format") != "autolora" or config.get("version") != FORMAT_VERSION:
        raise ValueError(f"directory: {directory} holds no autolora adapter of version {FORMAT_VERSION}")
    state = load_file(str(directory / WEIGHTS_NAME))
    mean = config.get("pooling", "model") == "mean" and pooling_of(model) != "mean"
    pooler = getattr(getattr(model, "base_model", model), "pooler", None)
    frozen = {p: p.requires_grad for p in model.parameters()}  # building adapters freezes their bases
    try:
        if mean and pooler is None:
            mean_pooling(model)  # raises its ValueError (no pooler to replace), changing nothing
        built = {} if any(True for _ in adapter_layers(model)) else _build_saved(model, config)
        _check_state(state, _shapes_after(model, built, pooler if mean else None), directory)
    except BaseException:
        for p, flag in frozen.items():
            p.requires_grad_(flag)
        raise
    # Checked: from here on nothing fails.
    if mean:
        mean_pooling(model)
    if built:
        attach_adapters(model, built, config["trainable"])
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value)
    return model


def _build_saved(model: nn.Module, config: dict) -> dict[str, nn.Module]:
    """The saved adapters, built for `model` but not attached. The saved targets are full module names,
    so the pooler that mean pooling replaces is never one of them."""
    return build_adapters(
        model,
        config["targets"],
        mode=config["mode"],
        selection=config.get("selection", "softmax"),
        lora_alpha=config["lora_alpha"],
        dropout=config["dropout"],
        ranks=config["ranks"],
        rank=max(config["ranks"].values()),
        trainable=config["trainable"],
    )


def _shapes_after(
    model: nn.Module, built: dict[str, nn.Module], pooler: nn.Module | None
) -> dict[str, torch.Size]:
    """Parameter name -> shape, as the model will have them once `built` is attached and `pooler` (if
    not None) is replaced by mean pooling, which has no parameters."""
    gone = [n for n, m in model.named_modules() if m is pooler] + list(built)
    shapes = {n: p.shape for n, p in model.named_parameters() if not any(n.startswith(f"{m}.") for m in gone)}
    for name, layer in built.items():
        shapes.update({f"{name}.{n}": p.shape for n, p in layer.named_parameters()})
    return shapes


def _check_state(state: dict[str, torch.Tensor], shapes: dict[str, torch.Size], directory: Path) -> None:
    missing = sorted(set(state) - set(shapes))
    if missing:
        raise KeyError(f"directory: {directory}: saved tensors not in the model: {missing[:10]}")
    wrong = [
        f"{k}: saved {tuple(v.shape)}, model has {tuple(shapes[k])}"
        for k, v in state.items()
        if v.shape != shapes[k]
    ]
    if wrong:
        shown = "; ".join(wrong[:5])
        raise ValueError(
            f"directory: {directory}: {len(wrong)} saved shape(s) differ from the model's: {shown}"
        )
