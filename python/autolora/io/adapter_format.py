"""Save and load AutoLoRA adapters: safetensors weights plus a small JSON config."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from autolora.io.atomic import atomic_write, atomic_write_json
from autolora.nn.sliced import SlicedAutoLoraLinear
from autolora.tuner.injection import inject
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
    was saved with it, and copies the saved tensors.

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
    if config.get("pooling", "model") == "mean":  # before inject: the pooler it replaces is no target
        mean_pooling(model)
    if not any(True for _ in adapter_layers(model)):
        inject(
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
    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise KeyError(f"directory: saved tensors not in the model: {missing[:10]}")
    with torch.no_grad():
        for key, value in state.items():
            if params[key].shape != value.shape:
                raise ValueError(
                    f"{key}: saved shape {tuple(value.shape)}, model has {tuple(params[key].shape)}"
                )
            params[key].copy_(value)
    return model
