"""The paper's seeded 1:1 split of the training set into D_tr (inner step) and D_val (beta's step)."""

from __future__ import annotations

import warnings

import datasets
import numpy as np


def split_train_val(
    dataset: datasets.Dataset, seed: int, stratify: bool
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The paper's seeded 1:1 split of the training set into D_tr and D_val (D_tr gets the odd one).

    stratify: keep the class proportions of the `labels` column in both halves (classification).
    If a class is too rare to stratify (fewer than 2 examples), says so and splits at random.
    """
    from sklearn.model_selection import train_test_split

    n = len(dataset)
    if n < 2:
        raise ValueError(f"dataset: needs at least 2 examples to split into D_tr and D_val, got {n}")
    labels = None
    if stratify:
        labels = np.asarray(list(dataset.with_format(None)["labels"]))
        if labels.ndim != 1 or labels.dtype.kind not in "iub":
            raise ValueError(
                "stratify: needs one integer class label per example; the labels column holds "
                f"{labels.dtype} with shape {labels.shape}"
            )
        counts = np.unique(labels, return_counts=True)[1]
        if counts.min() < 2 or len(counts) > n // 2:
            warnings.warn(
                "split_train_val: a class has fewer than 2 examples (or there are more classes than "
                "examples per half); splitting at random, not stratified",
                stacklevel=2,
            )
            labels = None
    idx = np.arange(n)
    tr, val = train_test_split(idx, test_size=n // 2, random_state=seed, shuffle=True, stratify=labels)
    return dataset.select(np.sort(tr)), dataset.select(np.sort(val))
