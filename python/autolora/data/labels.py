"""Labels: raw cells to class ids (with their names) or regression scores, every bad row named.

A bad label raises a LabelError naming the split and row; load_task, which knows the file, turns it
into an InputError at the file's line; a training set of a single class is an error of the training
file. The classes are the labels seen, never sized by the largest id. Legal but suspicious labels (a
class seen once) warn once.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


class LabelError(ValueError):
    """A bad label: `row` (0-based) of `split` ("train" or "eval") of `column`.

    task: the labels as a whole do not fit the task (real numbers for classification, names for
    regression), so the argument at fault is data.task rather than the file.
    """

    def __init__(self, column: str, split: str, row: int, message: str, task: bool = False) -> None:
        self.column, self.split, self.row, self.detail, self.task = column, split, row, message, task
        super().__init__(f"{column}: {split} row {row} {message}")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _is_number(v: Any) -> bool:
    try:
        return not isinstance(v, bool) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def as_int(v: Any) -> int | None:
    """The integer a label cell holds (7, 7.0, "7", True), or None if it is not an integer."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            x = float(v)  # "7", "7.0" and "7e0" are all 7
        except ValueError:
            return None
        return int(x) if x.is_integer() else None
    return None


def encode_class_labels(
    train: list,
    evals: list,
    column: str,
    names: Sequence[str] | None = None,
    string_labels: bool = False,
    subsampled: bool = False,
) -> tuple[list[int], list[int], list[str]]:
    """Map raw labels to ids 0..n-1. Returns (train ids, eval ids, label names).

    names + string_labels: cells hold names, id = position in `names`. names alone: cells hold ids in
    range(len(names)). No names: the classes are the labels the training set holds. Integers that are
    exactly 0..n-1 stay ids; any other set ({1, 2}, {0, 1, 1000000}) is mapped in numeric order, and
    other cells (names) in sorted order; the names returned keep the mapping (id -> the label as read).

    Raises:
        LabelError: a missing or out-of-range label, or an eval label no training example has.
        ValueError: the training labels hold a single class (nothing to tell apart).
    """
    for split, values in (("train", train), ("eval", evals)):
        for i, v in enumerate(values):
            if _missing(v):
                raise LabelError(column, split, i, f"has no label ({v!r})")
    if names is not None and string_labels:
        index = {n: i for i, n in enumerate(names)}
        out = _map(train, index, column, "train"), _map(evals, index, column, "eval"), list(names)
    elif names is not None:
        n = len(names)
        out = (
            _check_ids([as_int(v) for v in train], train, n, column, "train"),
            _check_ids([as_int(v) for v in evals], evals, n, column, "eval"),
            list(names),
        )
    else:
        ints = [as_int(v) for v in train]
        named = any(i is None for i in ints)
        if named:
            _check_not_mixed(train, ints, column)
        # Before the eval labels: a single train class is the train file's fault.
        _check_classes([str(v) for v in train] if named else ints, column, subsampled)
        hint = "; max_train_samples drew no training example of it" if subsampled else ""
        if named:
            return _encode_named(train, evals, column, hint)
        return _encode_integers(ints, evals, column, hint)
    _check_classes([out[2][c] for c in out[0]], column, subsampled)
    _check_seen(*out, evals, column, subsampled)
    return out


def _encode_integers(
    ints: list[int], evals: list, column: str, hint: str = ""
) -> tuple[list[int], list[int], list[str]]:
    """Integer labels without names: the class count is the number of labels seen, never max + 1
    (a stray 1000000 would otherwise build a head of a million classes)."""
    seen = sorted(set(ints))
    index = {v: i for i, v in enumerate(seen)}  # identity when the labels are exactly 0..n-1
    eval_ids = []
    for i, (v, raw) in enumerate(zip([as_int(v) for v in evals], evals, strict=True)):
        if v not in index:
            raise LabelError(
                column,
                "eval",
                i,
                f"has label {raw!r}, which no training example has; the eval labels must be among "
                f"the train labels {_brief(seen)}{hint}",
            )
        eval_ids.append(index[v])
    return [index[v] for v in ints], eval_ids, [str(v) for v in seen]


def _brief(values: list) -> str:
    return str(values) if len(values) <= 10 else f"{values[:10]} (and {len(values) - 10} more)"


def _check_classes(classes: list, column: str, subsampled: bool) -> None:
    """A single class in training: the model could only ever predict it. Raised, not warned."""
    found = sorted(set(classes), key=str)
    if len(found) < 2:
        hint = " (max_train_samples drew no other: raise it)" if subsampled else ""
        raise ValueError(
            f"column {column!r}: every training example has the class {found[0]!r}; classification "
            f"needs at least 2 classes{hint}"
        )


def _check_not_mixed(train: list, ints: list[int | None], column: str) -> None:
    """Integer labels beside names (a stray 'x' among 0/1), or real numbers (regression data)."""
    others = [i for i, v in enumerate(ints) if v is None]
    numbers = [i for i in others if _is_number(train[i])]
    if 2 * len(numbers) > len(train):
        raise LabelError(
            column,
            "train",
            numbers[0],
            f"has label {train[numbers[0]]!r}, a real number, as are "
            f"{len(numbers)} of {len(train)} labels: regression data? Set data.task to "
            "'regression'",
            task=True,
        )
    if len(others) == len(train):
        return
    name_is_odd = 2 * len(others) <= len(train)
    stray = others[0] if name_is_odd else next(i for i, v in enumerate(ints) if v is not None)
    raise LabelError(
        column,
        "train",
        stray,
        f"has label {train[stray]!r}, the odd one out: the other labels are "
        f"{'integers' if name_is_odd else 'names'}; a typo or a stray row?",
    )


def _check_seen(
    train_ids: list[int], eval_ids: list[int], names: list[str], evals: list, column: str, subsampled: bool
) -> None:
    """An eval class with no training example cannot be learned: an error, not a silently lower score.
    subsampled (max_train_samples): a small sample may miss a class; said once, as a warning."""
    seen = set(train_ids)
    unseen = sorted({names[c] for c in eval_ids if c not in seen})
    if unseen and subsampled:
        warnings.warn(
            f"{column}: eval class(es) {unseen} are in no example of the training sample "
            "(max_train_samples): they cannot be learned",
            stacklevel=4,
        )
        return
    for i, c in enumerate(eval_ids):
        if c not in seen:
            raise LabelError(
                column,
                "eval",
                i,
                f"has label {evals[i]!r} (class {names[c]!r}), which no training "
                "example has; the eval labels must be among the train labels",
            )


def warn_rare_labels(train_ids: list[int], names: list[str], column: str, where: str) -> None:
    """Legal but suspicious: a class seen once (or never) in training. One warning for each cause."""
    counts = Counter(train_ids)
    once = [names[c] for c in sorted(counts) if counts[c] == 1]
    if once:
        warnings.warn(
            f"{where}: label(s) {once} of column {column!r} occur only once in the training data: "
            "too rare to learn, and the 1:1 D_tr/D_val split can put them in one half only",
            stacklevel=3,
        )
    never = [n for c, n in enumerate(names) if counts[c] == 0]
    if never:
        warnings.warn(
            f"{where}: class(es) {never} of column {column!r} have no training example "
            "(the format's label names include them)",
            stacklevel=3,
        )


def _encode_named(
    train: list, evals: list, column: str, hint: str = ""
) -> tuple[list[int], list[int], list[str]]:
    found = sorted({str(v) for v in train})
    index = {n: i for i, n in enumerate(found)}
    train_ids = _map([str(v) for v in train], index, column, "train")
    return train_ids, _map([str(v) for v in evals], index, column, "eval", hint), found


def _map(values: list, index: dict[str, int], column: str, split: str, hint: str = "") -> list[int]:
    out = []
    for i, v in enumerate(values):
        if v not in index:
            known = _brief(list(index))
            raise LabelError(column, split, i, f"has label {v!r}, not one of the known labels {known}{hint}")
        out.append(index[v])
    return out


def _check_ids(ids: list[int | None], raw: list, n: int, column: str, split: str) -> list[int]:
    for i, (v, r) in enumerate(zip(ids, raw, strict=True)):
        if v is None or not 0 <= v < n:
            raise LabelError(
                column,
                split,
                i,
                f"has label {r!r}; labels must be integers in 0..{n - 1}"
                + (" (set data.task to 'regression' for real-valued scores)" if v is None else ""),
            )
    return ids  # type: ignore[return-value]


def encode_scores(values: list, column: str, split: str) -> list[float]:
    """Regression targets: finite floats, or a ValueError naming the column and the row."""
    bad = [i for i, v in enumerate(values) if not _is_number(v)]
    if bad:
        i, v = bad[0], values[bad[0]]
        if split == "train" and 2 * len(bad) > len(values):
            raise LabelError(
                column,
                split,
                i,
                f"has {v!r}, and {len(bad)} of {len(values)} labels are not "
                "numbers: class names? Set data.task to 'classification'",
                task=True,
            )
        raise LabelError(column, split, i, f"has {v!r}; regression needs a finite number")
    return [float(v) for v in values]


def warn_binary_scores(scores: list[float], column: str, where: str) -> None:
    """Legal but suspicious: regression targets that only ever take two values."""
    if len(scores) > 2 and len(set(scores)) <= 2:
        warnings.warn(
            f"{where}: the regression labels of column {column!r} take only the values "
            f"{sorted(set(scores))}: classification data? (data.task)",
            stacklevel=3,
        )
