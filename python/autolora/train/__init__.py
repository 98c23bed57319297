"""Training phases: batch streams and the step loop (loop.py), the learning rate along a phase
(lr_schedule.py), training-state checkpoints (state.py), several processes (distributed.py) and
activation checkpointing."""

from autolora.train.activation_checkpointing import enable_activation_checkpointing
from autolora.train.distributed import DistContext, DistributedError, init_distributed, shutdown
from autolora.train.loop import BatchStream, NonFiniteLoss, run_phase
from autolora.train.lr_schedule import lr_schedule
from autolora.train.state import load_checkpoint, save_checkpoint

__all__ = [
    "BatchStream",
    "DistContext",
    "DistributedError",
    "NonFiniteLoss",
    "enable_activation_checkpointing",
    "init_distributed",
    "load_checkpoint",
    "lr_schedule",
    "run_phase",
    "save_checkpoint",
    "shutdown",
]
