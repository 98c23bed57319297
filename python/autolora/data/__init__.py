"""Where task data enters, in the order it flows: readers.py (files, GLUE layouts, the Hub: raw
columns; nlg.py: the E2E and WebNLG files) -> labels.py (class ids, scores) -> encode.py
(`load_task`: check and tokenize) -> splits.py (the seeded D_tr : D_val split) -> collate.py
(dynamic padding of each batch).

This package needs datasets and scikit-learn (the "cli" extra); the layer and `inject` do not.
"""

from autolora.extras import MissingExtra, missing

if absent := missing("cli", "datasets", "sklearn"):
    raise MissingExtra("cli", "autolora.data (reading, tokenizing and splitting task data)", absent)

from autolora.config import DataConfig
from autolora.data.collate import Collator, TaskData
from autolora.data.encode import BUNDLED_COLA, DEFAULT_METRIC, default_data_config, load_task
from autolora.data.labels import encode_class_labels, encode_scores
from autolora.data.readers import FORMATS, LAYOUTS, Layout
from autolora.data.splits import split_train_val
from autolora.options import IGNORE_INDEX, TASK_TYPES

__all__ = [
    "BUNDLED_COLA",
    "DEFAULT_METRIC",
    "FORMATS",
    "IGNORE_INDEX",
    "LAYOUTS",
    "TASK_TYPES",
    "Collator",
    "DataConfig",
    "Layout",
    "TaskData",
    "default_data_config",
    "encode_class_labels",
    "encode_scores",
    "load_task",
    "split_train_val",
]
