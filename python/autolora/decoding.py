"""How causal-lm evaluation generates text: beam search options, a part of the pipeline's config.

The defaults are the LoRA paper's E2E setting for GPT-2 (Hu et al. 2021): beam 10, length penalty
0.9, no repeated 4-gram. Imports no torch: the CLI reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from autolora.checks import check_float, check_int
from autolora.options import opt


@dataclass
class DecodingConfig:
    """Decoding of `--max-generate`: transformers' generate() with these options, no sampling."""

    num_beams: int = opt(10, "beam search width (1: greedy)", "evaluation", "beams")
    length_penalty: float = opt(
        0.9,
        "beam scores are sum(log p) / length**length_penalty (transformers): 1 is the mean per token, "
        "smaller values favour shorter texts; only with num_beams > 1",
        "evaluation",
    )
    no_repeat_ngram_size: int = opt(
        4, "no n-gram of this many tokens is generated twice (0: no such constraint)", "evaluation", "tokens"
    )
    max_new_tokens: int = opt(
        64, "longest generated text (and no further than the model's positions)", "evaluation", "tokens"
    )

    def validate(self) -> None:
        """Raises InputError naming the option (as decoding.<name>) and its value when out of range."""
        check_int("decoding.num_beams", self.num_beams, 1)
        check_float("decoding.length_penalty", self.length_penalty)
        check_int("decoding.no_repeat_ngram_size", self.no_repeat_ngram_size, 0)
        check_int("decoding.max_new_tokens", self.max_new_tokens, 1)

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of transformers' generate() (max_new_tokens is capped by the caller)."""
        kwargs = asdict(self)
        if self.num_beams == 1:  # greedy: generate() warns about a length penalty it would ignore
            kwargs.pop("length_penalty")
        return {**kwargs, "do_sample": False}
