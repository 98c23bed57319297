"""Which modules of a model get adapters: target patterns and per-family defaults.

A pattern is an exact module name ("bert.encoder.layer.0.attention.self.query"), a suffix
("query" matches every module whose name ends in ".query") or a regex ("re:.*layer\\.[0-5]\\.q_proj").
A trailing "[q,v]" marks a fused projection whose output is [q | k | v] (GPT-2's c_attn): only
those parts get adapters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from autolora.nn.base_layer import is_supported_base

FUSED_PARTS = ("q", "k", "v")

# The paper's targets (query and value projections) for the families we know, tried in order.
DEFAULT_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT, RoBERTa, MiniLM, ELECTRA, ...
    ("q_proj", "v_proj"),  # LLaMA, Mistral, Qwen, OPT, BART, ...
    ("q_lin", "v_lin"),  # DistilBERT
    ("c_attn[q,v]",),  # GPT-2
)


@dataclass(frozen=True)
class Target:
    pattern: str
    parts: tuple[str, ...] | None  # adapted parts of a fused [q|k|v] output, or None: whole output

    @classmethod
    def parse(cls, spec: str) -> Target:
        m = re.fullmatch(r"(.+?)\[([a-z,\s]+)\]", spec.strip())
        if not m:
            return cls(spec.strip(), None)
        parts = tuple(p.strip() for p in m.group(2).split(",") if p.strip())
        bad = [p for p in parts if p not in FUSED_PARTS]
        if bad or not parts:
            raise ValueError(f"targets: {spec!r} names parts {bad or parts}; expected some of {FUSED_PARTS}")
        return cls(m.group(1), parts)

    def matches(self, name: str) -> bool:
        if self.pattern.startswith("re:"):
            return re.fullmatch(self.pattern[3:], name) is not None
        return name == self.pattern or name.endswith("." + self.pattern)


def name_matches(patterns: list[str] | tuple[str, ...], name: str) -> bool:
    return any(Target.parse(p).matches(name) for p in patterns)


def candidate_names(model: nn.Module) -> list[str]:
    """Names of the modules an adapter could wrap (nn.Linear and Conv1D)."""
    return [n for n, m in model.named_modules() if n and is_supported_base(m)]


def default_targets(model: nn.Module) -> tuple[str, ...]:
    """The first family default whose every pattern matches a supported module."""
    names = candidate_names(model)
    for family in DEFAULT_TARGETS:
        if all(any(Target.parse(p).matches(n) for n in names) for p in family):
            return family
    raise ValueError(
        "targets: no default fits this model; pass targets explicitly. "
        f"Candidate modules: {', '.join(names[:40])}{' ...' if len(names) > 40 else ''}"
    )
