"""Where task data enters: local TSV/CSV/JSON/JSONL files, the GLUE column layouts, or the Hub.

Everything here returns raw columns (a `Table`, column name -> values, and the line each row came
from) and raises an InputError (a ValueError) naming the argument (data.train_file, data.text_column)
and the file and line when a file, a row or a column is bad. Labels (labels.py), tokenizing
(encode.py) and batching (collate.py) live beside it.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from autolora.errors import InputError

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


class Table(dict):
    """Raw columns of one split (name -> values), and where each row came from, for error messages.

    lines: the 1-based line of each row in its file (TSV/CSV/JSON lines); None: rows are counted
    from 0 as `unit` ("item" of a JSON array, "row" of a Hub split).
    """

    def __init__(
        self, columns: dict, arg: str, source: str, lines: list[int] | None = None, unit: str = "row"
    ) -> None:
        super().__init__(columns)
        self.arg, self.source, self.lines, self.unit = arg, source, lines, unit

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.values()))) if self else 0

    def at(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines is not None else f"{self.unit} {i}"

    def error(self, i: int, message: str, arg: str | None = None) -> InputError:
        """An InputError at row i: names the argument (the file's, unless `arg`), the file, the line."""
        return InputError(arg or self.arg, message, path=self.source, at=self.at(i))

    def take(self, keep: Sequence[int]) -> Table:
        lines = None if self.lines is None else [self.lines[i] for i in keep]
        cols = {k: [v[i] for i in keep] for k, v in self.items()}
        return Table(cols, self.arg, self.source, lines, self.unit)


# ----------------------------------------------------------------------------------------- reading


def read_file(path: str, layout: Layout | None, which: str) -> Table:
    """Read one local file into columns. `which` ("train_file"/"eval_file") names it in errors."""
    arg, p = f"data.{which}", Path(path)
    if p.is_dir():
        raise InputError(arg, "is a folder; expected a file (TSV, CSV, JSON or JSON lines)", path=path)
    if not p.is_file():
        raise InputError(arg, "file not found", path=path)
    ext = p.suffix.lower()
    if layout is None and ext not in EXTENSIONS:
        raise InputError(
            arg,
            f"cannot tell the format from the extension {ext!r}; expected one of {EXTENSIONS}, "
            f"or set data.format to one of {FORMATS[1:]}",
            path=path,
        )
    text = _decode(p, arg)
    if layout is not None or ext in (".tsv", ".csv"):
        sep = "\t" if layout is not None or ext == ".tsv" else ","
        table = _read_delimited(text, sep, layout.columns if layout else None, arg, path)
    else:
        table = _read_json(text, arg, path)
    if not table or not table.num_rows:
        raise InputError(arg, "has no rows (empty split)", path=path)
    return table


def _decode(path: Path, arg: str) -> str:
    """The file's text (UTF-8, a byte order mark dropped), or an error naming the line of a bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        utf16 = (
            " (it looks like UTF-16: it starts with a UTF-16 byte order mark)"
            if raw[:2] in (b"\xff\xfe", b"\xfe\xff")
            else ""
        )
        raise InputError(
            arg,
            f"not UTF-8: byte 0x{raw[e.start]:02x} at column {column}{utf16}. Re-encode the file as "
            f"UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}",
            path=str(path),
            at=f"line {line}",
        ) from None


def _read_delimited(text: str, sep: str, names: tuple[str, ...] | None, arg: str, path: str) -> Table:
    """Rows with a field too many or too few are errors (a tab in the text, a lost column); blank
    lines are skipped, with one warning per file if any lie between rows."""
    # GLUE TSVs are not quoted (MRPC/QQP text holds bare quote characters): read them verbatim.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting)
    kind = "tab-separated" if sep == "\t" else "comma-separated"
    rows, lines, blank = [], [], []
    try:
        for row in reader:
            if not row or row == [""]:
                blank.append(reader.line_num)
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise InputError(arg, f"cannot parse: {e}", path=path, at=f"line {reader.line_num}") from e
    if not rows:
        raise InputError(arg, "has no rows (empty split)", path=path)
    if names is None:
        header, rows, header_line = rows[0], rows[1:], lines.pop(0)
        duplicated = sorted({c for c in header if header.count(c) > 1})
        if duplicated:
            raise InputError(
                arg, f"the header names columns {duplicated} twice", path=path, at=f"line {header_line}"
            )
        want = f"the header (line {header_line}) has {len(header)}: {header}"
    else:
        header, want = list(names), f"this headerless layout expects {len(names)}: {list(names)}"
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            hint = " (a separator inside the text?)" if len(row) > len(header) else ""
            raise InputError(
                arg, f"has {len(row)} {kind} columns{hint}; {want}", path=path, at=f"line {line}"
            )
    last = lines[-1] if lines else 0
    inside = [b for b in blank if b < last]
    if inside:
        warnings.warn(
            f"{arg}: {path}: skipped {len(inside)} blank line(s) between rows (first: line {inside[0]})",
            stacklevel=4,
        )
    return Table({c: [r[j] for r in rows] for j, c in enumerate(header)}, arg, path, lines)


def _read_json(text: str, arg: str, path: str) -> Table:
    """A JSON array of records, {"data": [...]}, a dict of columns, or JSON lines (one record a line)."""
    lines = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        data, lines = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as e:
                bad = n if data else whole.lineno  # the first record failing: maybe not JSON lines at all
                raise InputError(
                    arg,
                    f"not valid JSON (nor JSON lines): {e.msg if data else whole.msg}",
                    path=path,
                    at=f"line {bad}",
                ) from None
            lines.append(n)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict):  # columnar: {"col": [values...]}
        if not all(isinstance(v, list) for v in data.values()):
            raise InputError(arg, "expected a list of records or a dict of columns (lists)", path=path)
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(arg, f"its columns differ in length: {lengths}", path=path)
        return Table(dict(data), arg, path, unit="item")
    if not isinstance(data, list):
        raise InputError(arg, "expected a list of JSON objects (one per example)", path=path)
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            at = f"line {lines[i]}" if lines is not None else f"item {i}"
            raise InputError(arg, f"expected a JSON object (one example), got {r!r}", path=path, at=at)
    keys = list(dict.fromkeys(k for r in data for k in r))
    return Table({k: [r.get(k) for r in data] for k in keys}, arg, path, lines, unit="item")


def subset(table: Table, n: int | None, arg: str) -> Table:
    """A fixed-seed random subset of n rows, in file order (the first n rows of CoLA share one source)."""
    size = table.num_rows
    if n is not None and (not isinstance(n, int) or n < 1):
        raise InputError(f"data.{arg}", f"must be an integer >= 1 or None, got {n!r}")
    if n is None or n >= size:
        return table
    keep = np.sort(np.random.default_rng(0).permutation(size)[:n])
    return table.take(keep.tolist())


def load_hub(config: DataConfig) -> tuple[Table, Table, dict[str, Any]]:
    """Train and eval splits of a Hub dataset, plus its features (label names live there)."""
    try:
        dd = datasets.load_dataset(config.hub_dataset, config.hub_config)
    except Exception as e:  # network, missing dataset or config: re-raised with the arguments named
        raise ValueError(
            f"data.hub_dataset={config.hub_dataset!r}, hub_config={config.hub_config!r}: cannot load "
            f"({type(e).__name__}: {e}). Offline? Use train_file/eval_file instead."
        ) from e
    eval_split = next((s for s in ("validation", "validation_matched", "dev", "test") if s in dd), None)
    if "train" not in dd or eval_split is None:
        raise ValueError(
            f"data.hub_dataset={config.hub_dataset!r}: needs a 'train' and a 'validation' split; "
            f"found {list(dd)}"
        )
    train, ev = dd["train"], dd[eval_split]
    for name, split in (("train", train), (eval_split, ev)):
        if len(split) == 0:
            raise ValueError(f"data.hub_dataset={config.hub_dataset!r}: split {name!r} is empty")
    tables = [
        Table(s.to_dict(), "data.hub_dataset", f"{config.hub_dataset!r} split {name!r}")
        for name, s in (("train", train), (eval_split, ev))
    ]
    return tables[0], tables[1], dict(train.features)


def feature_names(feature: Any) -> list[str] | None:
    """Label names of a ClassLabel feature, or of a sequence of ClassLabel (token tags)."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


# --------------------------------------------------------------------------------------- columns


def find_column(table: Table, explicit: str | None, candidates: Sequence[str], arg: str, where: str) -> str:
    """The column `explicit` names, or the first of `candidates` in the table. arg: the DataConfig
    option that names it ("text_column"), reported as data.<arg>."""
    arg = f"data.{arg}"
    if explicit is not None:
        if explicit not in table:
            raise InputError(arg, f"{explicit!r}: no such column in {where}; columns found: {list(table)}")
        return explicit
    found = next((c for c in candidates if c in table), None)
    if found is None:
        hint = (
            " (a headerless TSV? set data.format to 'sentence-tsv' or a GLUE layout name)"
            if where.endswith(".tsv'")
            else ""
        )
        raise InputError(
            arg,
            f"none of the columns {list(candidates)} is in {where}; columns found: "
            f"{list(table)}{hint}. Set {arg} to name the column.",
        )
    return found


def texts(table: Table, column: str) -> list[str]:
    """A text column: every cell non-empty text, or an error at the row (a label with no sentence)."""
    for i, v in enumerate(table[column]):
        if not isinstance(v, str):
            raise table.error(i, f"column {column!r} holds {v!r}, expected text")
        if not v.strip():
            raise table.error(i, f"column {column!r} is empty (a row with no text?)")
    return table[column]


def as_words(table: Table, column: str) -> list[list]:
    """Token-classification cells: a list, or a whitespace-separated string (TSV/CSV files)."""
    out = []
    for i, v in enumerate(table[column]):
        v = v.split() if isinstance(v, str) else v
        if not isinstance(v, list) or not v:
            raise table.error(i, f"column {column!r} holds {v!r}, expected a non-empty list of words/tags")
        out.append(v)
    return out
