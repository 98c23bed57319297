"""Labels: raw cells to class ids (with their names) or regression scores, every bad row named."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


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
    train: list, evals: list, column: str, names: Sequence[str] | None = None, string_labels: bool = False
) -> tuple[list[int], list[int], list[str]]:
    """Map raw labels to ids 0..n-1. Returns (train ids, eval ids, label names).

    names + string_labels: cells hold names, id = position in `names`. names alone: cells hold ids in
    range(len(names)). No names: integer cells are ids (n = max train id + 1); other cells are names,
    mapped through the sorted names found in the training set.
    """
    if names is not None and string_labels:
        index = {n: i for i, n in enumerate(names)}
        return _map(train, index, column, "train"), _map(evals, index, column, "eval"), list(names)
    ints = [as_int(v) for v in train]
    if names is None and any(i is None for i in ints):
        return _encode_named(train, evals, column)
    n = len(names) if names is not None else max(ints) + 1
    train_ids = _check_ids(ints, train, n, column, "train")
    eval_ids = _check_ids([as_int(v) for v in evals], evals, n, column, "eval")
    if n < 2:
        raise ValueError(f"{column}: classification needs at least 2 classes; every train label is 0")
    return train_ids, eval_ids, list(names) if names is not None else [str(i) for i in range(n)]


def _encode_named(train: list, evals: list, column: str) -> tuple[list[int], list[int], list[str]]:
    for split, values in (("train", train), ("eval", evals)):
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                raise ValueError(f"{column}: {split} row {i} has no label")
    found = sorted({str(v) for v in train})
    if len(found) < 2:
        raise ValueError(f"{column}: classification needs at least 2 classes; train has only {found}")
    index = {n: i for i, n in enumerate(found)}
    train_ids = _map([str(v) for v in train], index, column, "train")
    return train_ids, _map([str(v) for v in evals], index, column, "eval"), found


def _map(values: list, index: dict[str, int], column: str, split: str) -> list[int]:
    out = []
    for i, v in enumerate(values):
        if v not in index:
            raise ValueError(
                f"{column}: {split} row {i} has label {v!r}, not one of the known labels {list(index)}"
            )
        out.append(index[v])
    return out


def _check_ids(ids: list[int | None], raw: list, n: int, column: str, split: str) -> list[int]:
    for i, (v, r) in enumerate(zip(ids, raw, strict=True)):
        if v is None or not 0 <= v < n:
            raise ValueError(
                f"{column}: {split} row {i} has label {r!r}; labels must be integers in 0..{n - 1}"
                + (" (use task='regression' for real-valued scores)" if v is None else "")
            )
    return ids  # type: ignore[return-value]


def encode_scores(values: list, column: str, split: str) -> list[float]:
    """Regression targets: finite floats, or a ValueError naming the column and the row."""
    out = []
    for i, v in enumerate(values):
        try:
            x = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x):
            raise ValueError(f"{column}: {split} row {i} has {v!r}; regression needs a finite number")
        out.append(x)
    return out
