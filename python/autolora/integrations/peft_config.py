"""A PEFT LoraConfig read as AutoLoRA's search settings, so a script's `get_peft_model(model, config)`
becomes `inject_like(model, config)` with the same targets, rank bound, scaling and heads."""

from __future__ import annotations

import dataclasses

from torch import nn

from autolora.extras import MissingExtra, missing
from autolora.tuner.injection import inject

# Read into inject's arguments, or bookkeeping that does not change the adapters.
_READ = {"r", "target_modules", "lora_alpha", "lora_dropout", "modules_to_save"}
_IGNORED = {
    "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
    "inference_mode", "fan_in_fan_out",  # autolora reads the base layer's layout (Conv1D) itself
}  # fmt: skip


def inject_like(model: nn.Module, lora_config, mode: str = "search") -> list[str]:
    """`autolora.inject` with a PEFT LoraConfig's settings.

    Reads k = r (the search keeps at most r components per layer), target_modules (names match as in
    PEFT: exact or a '.'-suffix; a string is a full-match regex), lora_alpha, lora_dropout, and
    modules_to_save as the trainable heads. Any other field set away from PEFT's default (DoRA,
    rsLoRA, bias, layers_to_transform, rank_pattern, ...) has no AutoLoRA meaning and is refused,
    naming the field, before the model is touched.

    Args:
        model: the model to inject into, in place.
        lora_config (peft.LoraConfig): its settings.
        mode: "search" or "fixed" (rank r everywhere).

    Returns:
        The names of the wrapped modules.

    Raises:
        TypeError: lora_config is not a LoraConfig.
        ValueError: a field with no AutoLoRA meaning is set.
    """
    if missing("peft"):
        raise MissingExtra("peft", "inject_like")
    from peft import LoraConfig

    if not isinstance(lora_config, LoraConfig):
        raise TypeError(f"lora_config: expected peft.LoraConfig, got {type(lora_config).__name__}")
    default = LoraConfig()
    changed = [
        f.name
        for f in dataclasses.fields(lora_config)
        if f.name not in _READ | _IGNORED and getattr(lora_config, f.name) != getattr(default, f.name)
    ]
    if changed:
        raise ValueError(f"lora_config: {', '.join(sorted(changed))} set; AutoLoRA supports none of them")
    targets = lora_config.target_modules
    if isinstance(targets, str):
        targets = [f"re:{targets}"]
    elif targets is not None:
        targets = sorted(targets)
    return inject(
        model,
        targets,
        rank=lora_config.r,
        lora_alpha=lora_config.lora_alpha,
        dropout=lora_config.lora_dropout,
        mode=mode,
        trainable=list(lora_config.modules_to_save or ()),
    )
