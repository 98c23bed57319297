"""Training helpers around the Trainer: the search's batch streams (stream.py), one host transfer per
logging step (host.py), trainable-state checkpoints (state.py), the search's cross-rank reduction
(distributed.py) and activation checkpointing."""

from autolora.train.activation_checkpointing import enable_activation_checkpointing
from autolora.train.distributed import DistContext, DistributedError
from autolora.train.host import NonFiniteLoss, to_host
from autolora.train.state import load_checkpoint, save_checkpoint
from autolora.train.stream import BatchStream

__all__ = [
    "BatchStream",
    "DistContext",
    "DistributedError",
    "NonFiniteLoss",
    "enable_activation_checkpointing",
    "load_checkpoint",
    "save_checkpoint",
    "to_host",
]
