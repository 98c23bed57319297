"""Export a trained AutoLoRA model in PEFT's LoRA layout, so `PeftModel.from_pretrained` loads it.

Each adapter becomes lora_A = V, lora_B = U * alpha * s / s_peft with s_peft = alpha_pattern / r:
exact in fixed mode (alpha = 1, s = s_peft). GPT-2's sliced c_attn becomes one LoRA on the whole
projection: A stacks the slices' V, B places each slice's scaled U in its rows (zeros for k), and
alpha_pattern = r makes PEFT's own scaling 1. Per-layer ranks go into rank_pattern.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from autolora.extras import MissingExtra, missing
from autolora.io.atomic import atomic_write, atomic_write_text, default_modes
from autolora.nn.layer import FusedAutoLoraLinear
from autolora.nn.sliced import SlicedAutoLoraLinear
from autolora.tuner.params import adapter_layers
from autolora.tuner.pooling import pooling_of
from autolora.tuner.targets import name_matches

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_README = "README.md"
MEAN_POOLING_NOTE = """# An AutoLoRA adapter trained with mean pooling

The classifier was trained on the mean of the last hidden states over the real tokens, not on the
model's pooler. Give the base model the same head before loading this adapter:

    from autolora.tuner.pooling import mean_pooling
    model = mean_pooling(AutoModelForSequenceClassification.from_pretrained(base, num_labels=...))
    model = PeftModel.from_pretrained(model, "this folder")
"""


@torch.no_grad()
def _lora_pair(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A: r x in, B: out x r, lora_alpha for PEFT) reproducing layer's update with PEFT's scaling."""
    if isinstance(layer, FusedAutoLoraLinear):
        B = layer.U.float() * layer.alpha() * layer.scaling / (layer.lora_alpha / layer.rank)
        return layer.V.float(), B, layer.lora_alpha
    assert isinstance(layer, SlicedAutoLoraLinear)
    A = torch.cat([a.V.float() for a in layer.adapters.values()], dim=0)
    B = torch.zeros(layer.out_features, A.shape[0])
    col = 0
    for part, a in layer.adapters.items():
        B[layer.slices[part], col : col + a.rank] = a.U.float() * a.alpha() * a.scaling
        col += a.rank
    return A, B, float(A.shape[0])  # lora_alpha = r: PEFT scaling 1, the scales live in B


def export_peft(
    model: nn.Module,
    directory: str | Path,
    trainable: list[str] | tuple[str, ...] = (),
    base_model_name_or_path: str | None = None,
) -> Path:
    """Save the adapters as a PEFT LoRA adapter that `PeftModel.from_pretrained(base, directory)` loads.

    Writes adapter_model.safetensors and adapter_config.json (per-layer ranks and scalings as
    `rank_pattern` and `alpha_pattern`); a search-mode adapter is written with alpha folded into its
    B, so the PEFT model reproduces the update. With mean pooling, a README.md says to call
    `autolora.mean_pooling` on the base model first (PEFT's config has no field for it).

    Args:
        model: a model with adapters.
        directory: created if missing.
        trainable: patterns of modules trained beside the adapters, saved as PEFT's `modules_to_save`.
        base_model_name_or_path: recorded in the config.

    Returns:
        The directory.

    Raises:
        ValueError: the model has no adapters.
    """
    if missing("peft"):
        raise MissingExtra("peft", "export_peft")
    from peft import LoraConfig

    directory = Path(directory)
    layers = list(adapter_layers(model))
    if not layers:
        raise ValueError("model: has no AutoLoRA adapters to export")
    tensors, rank_pattern, alpha_pattern = {}, {}, {}
    dtype = next(iter(layers))[1].base_layer.weight.dtype
    for name, layer in layers:
        A, B, lora_alpha = _lora_pair(layer)
        tensors[f"base_model.model.{name}.lora_A.weight"] = A.to(dtype).contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = B.to(dtype).contiguous()
        rank_pattern[name], alpha_pattern[name] = A.shape[0], lora_alpha
    heads = sorted({n for n, _ in model.named_modules() if n and name_matches(trainable, n)})
    for head in heads:
        for pname, p in model.get_submodule(head).named_parameters():
            tensors[f"base_model.model.{head}.{pname}"] = p.detach().contiguous()
    config = LoraConfig(
        r=max(rank_pattern.values()),
        lora_alpha=max(alpha_pattern.values()),
        target_modules=[n for n, _ in layers],
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        fan_in_fan_out=any(
            getattr(layer, "conv1d", False)
            or isinstance(layer, SlicedAutoLoraLinear)
            and type(layer.base_layer).__name__ == "Conv1D"
            for _, layer in layers
        ),
        modules_to_save=heads or None,  # in full: PEFT wraps every module whose name ends with one
        base_model_name_or_path=base_model_name_or_path,
    ).to_dict()
    config = json.loads(json.dumps(config, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))
    tensors = {k: v.cpu() for k, v in tensors.items()}
    atomic_write(directory / PEFT_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_text(directory / PEFT_CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    if pooling_of(model) == "mean":  # PEFT's config has no field for it (an extra key draws a warning)
        atomic_write_text(directory / PEFT_README, MEAN_POOLING_NOTE)
    return directory


def save_merged(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    """Save the model with its adapters folded into the base weights, as a plain transformers model.

    The model itself is left as it is: a copy is merged, saved with `save_pretrained` into a
    temporary directory and renamed to `directory`, replacing what was there.

    Args:
        model: a transformers model with adapters.
        directory: where the merged model goes.
        tokenizer (PreTrainedTokenizerBase | None): saved beside it when given.

    Returns:
        The directory.
    """
    import copy

    from autolora.tuner.injection import unload

    directory = Path(directory)
    merged = unload(copy.deepcopy(model), merge_weights=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        merged.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        default_modes(tmp)  # mkdtemp's 0700 and safetensors' 0600 would make the model private
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
