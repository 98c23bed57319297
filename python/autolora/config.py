"""The pipeline's configuration: paper defaults, overridable by file or flag.

Imports no data code: `autolora doctor` and the CLI parser read these dataclasses without `datasets`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from autolora.checks import check_choice, check_int, check_text
from autolora.decoding import DecodingConfig
from autolora.errors import InputError
from autolora.options import TASK_TYPES, opt
from autolora.run_options import (
    EMBEDDED_MODEL,
    AdapterOptions,
    EvaluationOptions,
    ModelOptions,
    OutputOptions,
    RetrainOptions,
    RuntimeOptions,
    TrainOptions,
)
from autolora.search_options import SearchOptions

__all__ = ["EMBEDDED_MODEL", "NESTED", "DataConfig", "PipelineConfig", "load_config", "opt"]


@dataclass
class DataConfig:
    """Where the data is and how to read it: the `data.*` options of `autolora run`.

    Column names left as None are guessed from common names. Each field's meaning is in its `opt`
    metadata, printed by `autolora run --help`.
    """

    task: str = opt(
        "classification",
        "what is learned: sets the head, the loss and the metrics",
        "data",
        choices=TASK_TYPES,
    )
    train_file: str | None = opt(
        None, "training data: TSV, CSV, JSON or JSONL; none with --format cola: the bundled CoLA", "data"
    )
    eval_file: str | None = opt(None, "evaluation data, the set the final score is taken on", "data")
    format: str = opt(
        "auto",
        "file layout: auto (by extension), a GLUE layout (cola, sst2, mrpc, rte, stsb, qnli, mnli, qqp), "
        "sentence-tsv (headerless label<TAB>sentence), or for causal-lm data-to-text: e2e (the E2E "
        "CSV mr,ref) or webnlg (WebNLG 2017 JSON)",
        "data",
    )
    text_column: str | None = opt(None, "column of the text; none: guessed from common names", "data")
    text_pair_column: str | None = opt(None, "column of a pair's second text; none: guessed", "data")
    label_column: str | None = opt(None, "column of the labels or scores; none: guessed", "data")
    tokens_column: str | None = opt(
        None, "token classification: the words (a list, or a space-separated string)", "data"
    )
    tags_column: str | None = opt(None, "token classification: the tags (names or ids), one per word", "data")
    source_column: str | None = opt(None, "causal-lm: the prompt", "data")
    target_column: str | None = opt(None, "causal-lm: the completion the loss is taken on", "data")
    hub_dataset: str | None = opt(None, "a Hugging Face Hub dataset instead of files (needs network)", "data")
    hub_config: str | None = opt(None, "the Hub dataset's configuration, e.g. a GLUE task name", "data")
    max_length: int = opt(
        128, "longer sequences are truncated (batches pad to their longest)", "data", "tokens"
    )
    max_train_samples: int | None = opt(
        None, "a fixed-seed random subset of the training data; none: all of it", "data", "examples"
    )
    max_eval_samples: int | None = opt(
        None, "a fixed-seed random subset of the eval data; none: all of it", "data", "examples"
    )

    def validate_data(self) -> None:
        """Checks the options the data code cannot read a file without (as data.<name>); the files and
        columns themselves are checked when read (autolora.data.load_task).

        Raises:
            InputError: the first option out of range, named with its value.
        """
        check_choice("data.task", self.task, TASK_TYPES)
        for name in ("train_file", "eval_file", "text_column", "text_pair_column", "label_column",
                     "tokens_column", "tags_column", "source_column", "target_column", "hub_dataset",
                     "hub_config"):  # fmt: skip
            check_text(f"data.{name}", getattr(self, name), none=True)
        check_text("data.format", self.format)
        check_int("data.max_length", self.max_length, 1)
        check_int("data.max_train_samples", self.max_train_samples, 1, none=True)
        check_int("data.max_eval_samples", self.max_eval_samples, 1, none=True)


# A dataclass takes its bases' fields from the last base to the first: listed last-first, so that
# `autolora run --help` and the dry run's JSON begin with the model and end with the output.
@dataclass
class PipelineConfig(
    OutputOptions,
    EvaluationOptions,
    RuntimeOptions,
    RetrainOptions,
    TrainOptions,
    SearchOptions,
    AdapterOptions,
    ModelOptions,
):
    """Every option of `autolora run`: the fields are its flags (`lr_w` is `--lr-w`) and the keys of
    a `--config` file, `data` holding DataConfig's and `decoding` DecodingConfig's.

    The fields are declared once, in sections that each check their own (autolora.run_options,
    autolora.search_options: SearchOptions is AutoLoraArguments' too), each with
    `opt(default, help, group, unit, choices)`; `autolora run --help` prints that metadata in groups
    (model, data, adapters, search, retraining, distributed, evaluation, output). Build one with
    `load_config`, which validates it.
    """

    data: DataConfig = field(default_factory=DataConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def validate(self) -> None:
        """Every section's checks, then the checks across sections.

        Raises:
            InputError: the first option out of range, named with its value (a ValueError).
        """
        self.validate_model()
        self.validate_adapters()
        self.validate_search()
        self.validate_train()
        self.validate_retrain()
        self.validate_runtime()
        self.validate_evaluation()
        self.validate_output()
        self.data.validate_data()
        self.decoding.validate()
        if self.rank_budget is not None and self.rank_budget > self.k:
            raise InputError(
                "rank_budget", f"expected none or a number in [1, k={self.k}], got {self.rank_budget!r}"
            )
        if self.rank_share == "norm" and self.ranks is not None:
            raise InputError(
                "rank_share",
                "expected selection with ranks ('norm' reads the searched updates; --ranks skips the "
                "search), got 'norm'",
            )
        if self.fsdp and self.hypergradient == "exact":
            raise InputError(
                "fsdp",
                "expected off with hypergradient 'exact' (it differentiates through the lookahead's "
                "gradient, and that second backward needs the base weights the first already freed back "
                "to their shards; use 'second-order'), got on",
            )
        if self.fsdp and self.save_merged:
            raise InputError(
                "save_merged",
                "expected off with fsdp: merging needs the whole base in one process; merge the "
                "saved adapter/ into the base model afterwards, got on",
            )
        if self.fsdp and self.resume:
            raise InputError(
                "resume",
                "expected off with fsdp: transformers checkpoints no optimizer state for a model sharded "
                "this way, so a resumed run could not continue exactly; got on",
            )

    @property
    def autocast_dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The option groups that are dataclasses of their own: "data.x" / "decoding.x" in files and overrides.
NESTED = {"data": DataConfig, "decoding": DecodingConfig}


# Options that are gone, and what replaces them: a flag or a config key naming one fails with this.
REMOVED = {
    "loss_scale": "removed: fp16 runs scale their losses dynamically (the Trainer's GradScaler), the "
    "search's too; drop the option",
}


def _merge(cls, values: dict, where: str):
    for key in sorted(set(values) & set(REMOVED)):
        raise InputError(key, REMOVED[key])
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        if key in NESTED and isinstance(value, dict):
            value = _merge(NESTED[key], value, f"{where}.{key}")
        else:
            value = _typed(names[key], value, f"{where}.{key}".removeprefix("config."))
        kwargs[key] = value
    return cls(**kwargs)


def _typed(f: dataclasses.Field, value, arg: str):
    """`value` as the field's type: YAML reads 1e-4 as a string, so numbers in strings are converted;
    anything else of the wrong type is an error naming the option (not a TypeError mid-run)."""
    kind = str(f.type)
    if value is None and kind.endswith("| None"):
        return None
    kind = kind.removesuffix(" | None")
    convert = {"int": int, "float": float}.get(kind)
    if convert is not None and isinstance(value, str):
        try:
            value = convert(value)
        except ValueError:
            pass
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }.get(kind, lambda v: True)
    if not ok(value):
        raise InputError(arg, f"expected {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _read_config_file(path: Path):
    """The options a YAML or JSON file holds; a missing file, a folder, bad bytes or bad syntax is an
    InputError naming `config`, the file and the line."""
    if not path.is_file():
        raise InputError(
            "config", "is a folder, not a file" if path.is_dir() else "file not found", path=str(path)
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            "config", f"not UTF-8 (byte {e.start}); re-encode it as UTF-8", path=str(path)
        ) from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f"line {mark.line + 1}" if mark is not None else None
            raise InputError(
                "config", f"not valid YAML: {getattr(e, 'problem', e)}", path=str(path), at=at
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            "config", f"not valid JSON: {e.msg}", path=str(path), at=f"line {e.lineno}"
        ) from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """The pipeline's configuration: the defaults, then a YAML/JSON file, then overrides.

    Args:
        path: a YAML or JSON file of options (DataConfig's under `data:`, DecodingConfig's under
            `decoding:`); None: the defaults.
        overrides: flat options that win over the file, the nested ones keyed "data.<name>" and
            "decoding.<name>" (as the CLI's flags arrive).

    Returns:
        The validated config.

    Raises:
        ValueError: an unknown option, a value of the wrong type or out of range, or a file that is
            not a mapping of options (autolora.errors.InputError names the file and line).
    """
    values: dict = {}
    if path is not None:
        path = Path(path)
        values = _read_config_file(path)
        if not isinstance(values, dict):
            raise ValueError(f"config: {path} must hold a mapping of options")
    nested = {name: dict(values.pop(name, {}) or {}) for name in NESTED}
    for key, value in (overrides or {}).items():
        name, dot, option = key.partition(".")
        if dot and name in nested:
            nested[name][option] = value
        else:
            values[key] = value
    config = _merge(PipelineConfig, {**values, **nested}, "config")
    config.validate()
    return config
