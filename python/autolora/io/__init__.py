"""What leaves the process: atomic writes (atomic.py), the autolora adapter format (adapter_format.py),
PEFT export and merged models (peft_export.py), and the run's figures (plots.py)."""

from autolora.io.adapter_format import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    adapter_config,
    adapter_state_dict,
    load_adapter,
    save_adapter,
)
from autolora.io.atomic import atomic_write, atomic_write_json, atomic_write_text
from autolora.io.peft_export import export_peft, save_merged

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "adapter_config",
    "adapter_state_dict",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "export_peft",
    "load_adapter",
    "save_adapter",
    "save_merged",
]
