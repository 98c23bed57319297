"""Where task data enters: local TSV/CSV/JSON/JSONL files, the GLUE column layouts, or the Hub.

Everything here returns raw columns (a `Table`, column name -> values) and raises a ValueError that
names the argument (train_file, text_column, ...) when a file or a column is missing. Tokenizing,
labels (labels.py), tokenizing (encode.py) and batching (collate.py) live beside it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

if TYPE_CHECKING:
    from autolora.config import DataConfig


@dataclass(frozen=True)
class Layout:
    """Column layout of one GLUE-style TSV file: which columns hold the text, pair and label."""

    task: str
    text: str
    label: str
    pair: str | None = None
    columns: tuple[str, ...] | None = None  # headerless files: names given to the columns in order
    names: tuple[str, ...] | None = None  # fixed label names (index = label id)
    string_labels: bool = False  # True: the file holds the names, not the ids
    metric: str = "accuracy"


_ENTAIL = ("entailment", "not_entailment")
_CLS = "classification"
LAYOUTS: dict[str, Layout] = {
    "cola": Layout(_CLS, "sentence", "label", columns=("source", "label", "mark", "sentence"),
                   names=("unacceptable", "acceptable"), metric="matthews_correlation"),
    "sst2": Layout(_CLS, "sentence", "label", names=("negative", "positive")),
    "mrpc": Layout(_CLS, "#1 String", "Quality", pair="#2 String", names=("not_equivalent", "equivalent")),
    "rte": Layout(_CLS, "sentence1", "label", pair="sentence2", names=_ENTAIL, string_labels=True),
    "stsb": Layout("regression", "sentence1", "score", pair="sentence2", metric="spearman"),
    "qnli": Layout(_CLS, "question", "label", pair="sentence", names=_ENTAIL, string_labels=True),
    "mnli": Layout(_CLS, "sentence1", "gold_label", pair="sentence2",
                   names=("contradiction", "entailment", "neutral"), string_labels=True),
    "qqp": Layout(_CLS, "question1", "is_duplicate", pair="question2", names=("not_duplicate", "duplicate")),
    "sentence-tsv": Layout(_CLS, "sentence", "label", columns=("label", "sentence")),
}  # fmt: skip
FORMATS = ("auto", *LAYOUTS)
EXTENSIONS = (".tsv", ".csv", ".json", ".jsonl")

# Column names tried, in order, when the config does not name one. Pair-able names come first so
# that ("question", "sentence") reads as a QNLI pair rather than a lone "sentence".
TEXT_CANDIDATES = ("sentence1", "question1", "premise", "question", "sentence", "text")
PAIR_OF = {
    "sentence1": "sentence2",
    "question1": "question2",
    "premise": "hypothesis",
    "question": "sentence",
}
LABEL_CANDIDATES = ("label", "labels", "score", "gold_label")
TOKENS_CANDIDATES = ("tokens", "words")
TAGS_CANDIDATES = ("ner_tags", "tags", "labels", "label")
SOURCE_CANDIDATES = ("source", "prompt", "meaning_representation", "input")
TARGET_CANDIDATES = ("target", "completion", "human_reference", "output")

Table = dict[str, list]  # raw rows as columns

# ----------------------------------------------------------------------------------------- reading


def read_file(path: str, layout: Layout | None, which: str) -> Table:
    """Read one local file into columns. `which` ("train_file"/"eval_file") names it in errors."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{which}: file not found: {path!r}")
    ext = p.suffix.lower()
    if layout is not None:
        table = _read_delimited(p, "\t", layout.columns, which)
    elif ext in (".tsv", ".csv"):
        table = _read_delimited(p, "\t" if ext == ".tsv" else ",", None, which)
    elif ext in (".json", ".jsonl"):
        table = _read_json(p, which)
    else:
        raise ValueError(
            f"{which}: cannot tell the format of {path!r} from its extension {ext!r}; "
            f"expected one of {EXTENSIONS}, or set format to one of {FORMATS[1:]}"
        )
    if not table or not len(next(iter(table.values()))):
        raise ValueError(f"{which}: {path!r} has no rows (empty split)")
    return table


def _read_delimited(path: Path, sep: str, names: tuple[str, ...] | None, which: str) -> Table:
    import pandas as pd

    # GLUE TSVs are not quoted (MRPC/QQP text holds bare quote characters): read them verbatim.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    kw = dict(sep=sep, quoting=quoting, dtype=str, keep_default_na=False, encoding="utf-8")
    try:
        frame = pd.read_csv(path, header=None if names else 0, **kw)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{which}: {str(path)!r} has no rows (empty split)") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{which}: cannot parse {str(path)!r}: {e}") from e
    if names is not None:
        if frame.shape[1] != len(names):
            raise ValueError(
                f"{which}: {str(path)!r} has {frame.shape[1]} tab-separated columns; this headerless "
                f"layout expects {len(names)}: {list(names)}"
            )
        frame.columns = list(names)
    return {str(c): frame[c].tolist() for c in frame.columns}


def _read_json(path: Path, which: str) -> Table:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{which}: {str(path)!r} is neither JSON nor JSON lines: {e}") from e
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict):  # columnar: {"col": [values...]}
        if not all(isinstance(v, list) for v in data.values()):
            raise ValueError(f"{which}: {str(path)!r}: expected a list of records or a dict of columns")
        return dict(data)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{which}: {str(path)!r}: expected a list of JSON objects (one per example)")
    keys = list(dict.fromkeys(k for r in data for k in r))
    return {k: [r.get(k) for r in data] for k in keys}


def subset(table: Table, n: int | None, arg: str) -> Table:
    """A fixed-seed random subset of n rows, in file order (the first n rows of CoLA share one source)."""
    size = len(next(iter(table.values())))
    if n is None or n >= size:
        return table
    if n < 1:
        raise ValueError(f"{arg}: must be >= 1 or None, got {n}")
    keep = np.sort(np.random.default_rng(0).permutation(size)[:n])
    return {k: [v[i] for i in keep] for k, v in table.items()}


def load_hub(config: DataConfig) -> tuple[Table, Table, dict[str, Any]]:
    """Train and eval splits of a Hub dataset, plus its features (label names live there)."""
    try:
        dd = datasets.load_dataset(config.hub_dataset, config.hub_config)
    except Exception as e:  # network, missing dataset or config: re-raised with the arguments named
        raise ValueError(
            f"hub_dataset={config.hub_dataset!r}, hub_config={config.hub_config!r}: cannot load "
            f"({type(e).__name__}: {e}). Offline? Use train_file/eval_file instead."
        ) from e
    eval_split = next((s for s in ("validation", "validation_matched", "dev", "test") if s in dd), None)
    if "train" not in dd or eval_split is None:
        raise ValueError(
            f"hub_dataset={config.hub_dataset!r}: needs a 'train' and a 'validation' split; found {list(dd)}"
        )
    train, ev = dd["train"], dd[eval_split]
    for name, split in (("train", train), (eval_split, ev)):
        if len(split) == 0:
            raise ValueError(f"hub_dataset={config.hub_dataset!r}: split {name!r} is empty")
    return train.to_dict(), ev.to_dict(), dict(train.features)


def feature_names(feature: Any) -> list[str] | None:
    """Label names of a ClassLabel feature, or of a sequence of ClassLabel (token tags)."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


# --------------------------------------------------------------------------------------- columns


def find_column(table: Table, explicit: str | None, candidates: Sequence[str], arg: str, where: str) -> str:
    if explicit is not None:
        if explicit not in table:
            raise ValueError(f"{arg}={explicit!r}: no such column in {where}; columns found: {list(table)}")
        return explicit
    found = next((c for c in candidates if c in table), None)
    if found is None:
        hint = (
            " (a headerless TSV? set format to 'sentence-tsv' or a GLUE layout name)"
            if where.endswith(".tsv'")
            else ""
        )
        raise ValueError(
            f"{arg}: none of the columns {list(candidates)} is in {where}; columns found: "
            f"{list(table)}{hint}. Set {arg} to name the column."
        )
    return found


def as_strings(values: list, column: str, where: str) -> list[str]:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ValueError(f"{column}: row {i} of {where} is {v!r}, expected text")
    return values


def as_words(values: list, column: str, where: str) -> list[list]:
    """Token-classification cells: a list, or a whitespace-separated string (TSV/CSV files)."""
    out = []
    for i, v in enumerate(values):
        v = v.split() if isinstance(v, str) else v
        if not isinstance(v, list) or not v:
            raise ValueError(
                f"{column}: row {i} of {where} is {v!r}, expected a non-empty list of words/tags"
            )
        out.append(v)
    return out
