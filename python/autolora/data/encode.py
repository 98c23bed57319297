"""Task data: tokenize what readers.py read and check its labels before any training starts.

Where data enters: `load_task(DataConfig, tokenizer)` reads the train and eval files, checks every
column and label before any training starts, and returns a `TaskData` whose datasets hold only
`input_ids`, `attention_mask`, [`token_type_ids`] and `labels`. `split_train_val` makes the paper's
seeded 1:1 split D_tr : D_val of the training set (stratified for classification).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path
from typing import Any

import datasets

from autolora.config import DataConfig
from autolora.data.collate import Collator, TaskData
from autolora.data.labels import (
    LabelError,
    as_int,
    encode_class_labels,
    encode_scores,
    warn_binary_scores,
    warn_rare_labels,
)
from autolora.data.nlg import NLG_FORMATS, read_nlg, subset_inputs
from autolora.data.readers import (
    FORMATS,
    LABEL_CANDIDATES,
    LAYOUTS,
    PAIR_OF,
    SOURCE_CANDIDATES,
    TAGS_CANDIDATES,
    TARGET_CANDIDATES,
    TEXT_CANDIDATES,
    TOKENS_CANDIDATES,
    Layout,
    Table,
    as_words,
    feature_names,
    find_column,
    load_hub,
    read_file,
    subset,
    texts,
)
from autolora.errors import InputError
from autolora.options import IGNORE_INDEX, TASK_TYPES

BUNDLED_COLA = Path(__file__).resolve().parent.parent / "bundled" / "cola"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_METRIC = {
    "classification": "accuracy",
    "regression": "spearman",
    "token-classification": "f1",
    "causal-lm": "perplexity",
}


def default_data_config() -> DataConfig:
    """The embedded default task: the bundled GLUE CoLA (no network needed)."""
    return DataConfig(task="classification", format="cola")


# -------------------------------------------------------------------------------------- load_task


def load_task(config: DataConfig, tokenizer: Any) -> TaskData:
    """Read, check and tokenize the train and eval sets that `config` names.

    Every problem with the data (missing file or column, empty split, bad row or label) raises an
    InputError (a ValueError) naming the argument, the file and the line, before any model is touched.
    """
    layout = _check_config(config, tokenizer)
    train, evals, features, where = _read_splits(config, layout)
    train = subset(train, config.max_train_samples, "max_train_samples")
    # NLG formats: whole inputs, so that an evaluation item keeps all its references.
    evals = (subset_inputs if config.format in NLG_FORMATS else subset)(
        evals, config.max_eval_samples, "max_eval_samples"
    )
    encode = {
        "classification": _encode_sequences,
        "regression": _encode_sequences,
        "token-classification": _encode_tokens,
        "causal-lm": _encode_causal,
    }[config.task]
    data = encode(config, layout, tokenizer, train, evals, features, where)
    if config.task == "classification" and layout is None and _is_cola(config):
        data.metric = "matthews_correlation"
    return data


def _check_config(config: DataConfig, tokenizer: Any) -> Layout | None:
    if config.task not in TASK_TYPES:
        raise InputError("data.task", f"{config.task!r} is not one of {TASK_TYPES}")
    if config.format not in FORMATS + NLG_FORMATS:
        raise InputError("data.format", f"{config.format!r} is not one of {FORMATS + NLG_FORMATS}")
    if config.format in NLG_FORMATS and config.task != "causal-lm":
        raise InputError(
            "data.task", f"{config.task!r} does not fit format={config.format!r}: data-to-text is causal-lm"
        )
    if not isinstance(config.max_length, int) or config.max_length < 2:
        raise InputError("data.max_length", f"must be an integer >= 2, got {config.max_length!r}")
    if tokenizer is None:
        raise ValueError("tokenizer: required (a Hugging Face tokenizer)")
    layout = LAYOUTS.get(config.format)
    glue_task = _hub_glue_layout(config)
    expected = (layout or glue_task).task if (layout or glue_task) else None
    if expected is not None and expected != config.task:
        raise InputError(
            "data.task",
            f"{config.task!r} does not fit format={config.format!r}/hub_config={config.hub_config!r}, "
            f"which is a {expected} task",
        )
    return layout


def _hub_glue_layout(config: DataConfig) -> Layout | None:
    is_glue = (config.hub_dataset or "").lower().split("/")[-1] == "glue"
    return LAYOUTS.get(config.hub_config or "") if is_glue else None


def _is_cola(config: DataConfig) -> bool:
    return config.hub_config == "cola" or (config.hub_dataset or "").lower().endswith("cola")


def _read_splits(config: DataConfig, layout: Layout | None) -> tuple[Table, Table, dict, tuple[str, str]]:
    if config.hub_dataset:
        train, evals, features = load_hub(config)
        return train, evals, features, (f"data.hub_dataset {config.hub_dataset!r} (train)", "the eval split")
    train_file, eval_file = config.train_file, config.eval_file
    if train_file is None:
        if config.format != "cola":
            raise InputError(
                "data.train_file",
                "required (or set data.hub_dataset, or data.format='cola' for the bundled CoLA)",
            )
        train_file = str(BUNDLED_COLA / "train.tsv")
        eval_file = eval_file or str(BUNDLED_COLA / "dev.tsv")
    if eval_file is None:
        raise InputError(
            "data.eval_file", "required with data.train_file (the dev/test set the final score is taken on)"
        )
    if config.format in NLG_FORMATS:
        train = read_nlg(train_file, config.format, "train_file")
        evals = read_nlg(eval_file, config.format, "eval_file")
    else:
        train = read_file(train_file, layout, "train_file")
        evals = read_file(eval_file, layout, "eval_file")
    return train, evals, {}, (f"train_file '{train_file}'", f"eval_file '{eval_file}'")


def _both(train: Table, evals: Table, where, explicit, candidates, arg) -> str:
    """Resolve a column on the train split and require the same column in the eval split."""
    name = find_column(train, explicit, candidates, arg, where[0])
    find_column(evals, name, (), arg, where[1])
    return name


@contextmanager
def _at_lines(train: Table, evals: Table, row_of: Callable[[str, int], int] | None = None) -> Iterator[None]:
    """A LabelError (split, row) becomes an InputError at the file and line of that row; row_of maps
    an index into the flattened tags of a split to its row (token classification)."""
    try:
        yield
    except LabelError as e:
        table = train if e.split == "train" else evals
        row = e.row if row_of is None else row_of(e.split, e.row)
        arg = "data.task" if e.task else None
        raise table.error(row, f"column {e.column!r} {e.detail}", arg=arg) from None
    except ValueError as e:  # the labels as a whole (a single class): the training file is at fault
        raise InputError(train.arg, str(e), path=train.source) from None


def _tokenizer_pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):  # GPT-2 style tokenizers have no pad: pad with eos
        if getattr(tokenizer, attr, None) is not None:
            return int(getattr(tokenizer, attr))
    raise ValueError("tokenizer: has neither a pad token nor an eos token to pad batches with")


def _dataset(enc: Any, labels: list) -> datasets.Dataset:
    cols = {k: list(enc[k]) for k in MODEL_INPUTS if k in enc}
    return datasets.Dataset.from_dict({**cols, "labels": labels})


def _encode_sequences(config, layout, tokenizer, train, evals, features, where) -> TaskData:
    _check_not_tokens(config, train, where[0])
    text = _both(
        train, evals, where, config.text_column or (layout and layout.text), TEXT_CANDIDATES, "text_column"
    )
    pair = config.text_pair_column or (layout.pair if layout else None)
    if pair is None and config.text_column is None and layout is None and PAIR_OF.get(text) in train:
        pair = PAIR_OF[text]
    if pair is not None:
        pair = _both(train, evals, where, pair, (), "text_pair_column")
    label = _both(
        train,
        evals,
        where,
        config.label_column or (layout and layout.label),
        LABEL_CANDIDATES,
        "label_column",
    )
    with _at_lines(train, evals):
        if config.task == "regression":
            y_train = encode_scores(train[label], label, "train")
            y_eval = encode_scores(evals[label], label, "eval")
            num_labels, names = 1, None
            warn_binary_scores(y_train, label, f"{train.arg}: {train.source}")
        else:
            fixed = layout.names if layout else feature_names(features.get(label))
            string_labels = bool(layout and layout.string_labels)
            y_train, y_eval, names = encode_class_labels(
                train[label], evals[label], label, fixed, string_labels, config.max_train_samples is not None
            )
            num_labels = len(names)
            warn_rare_labels(y_train, names, label, f"{train.arg}: {train.source}")

    def tok(table: Table, split_where: str) -> Any:
        pairs = texts(table, pair) if pair else None
        return tokenizer(texts(table, text), pairs, truncation=True, max_length=config.max_length)

    return TaskData(
        task=config.task,
        train=_dataset(tok(train, where[0]), y_train),
        eval=_dataset(tok(evals, where[1]), y_eval),
        num_labels=num_labels,
        label_names=names,
        metric=layout.metric if layout else DEFAULT_METRIC[config.task],
        collate=Collator(_tokenizer_pad_id(tokenizer), per_token_labels=False),
        tokenizer=tokenizer,
    )


def _check_not_tokens(config: DataConfig, train: Table, where: str) -> None:
    """Words and tags columns but no text column: token-classification data read as sentences."""
    words = any(c in train for c in TOKENS_CANDIDATES) and any(c in train for c in ("ner_tags", "tags"))
    if words and config.text_column is None and not any(c in train for c in TEXT_CANDIDATES):
        raise InputError(
            "data.task",
            f"{config.task!r} needs a text column, but {where} has the columns {list(train)}: "
            "words and tags? Set data.task to 'token-classification' (or data.text_column)",
        )


def _encode_tokens(config, layout, tokenizer, train, evals, features, where) -> TaskData:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "tokenizer: token-classification needs a fast tokenizer (word_ids() aligns tags to subwords); "
            f"got {type(tokenizer).__name__}"
        )
    if config.tokens_column is None and not any(c in train for c in TOKENS_CANDIDATES):
        raise InputError(
            "data.task",
            f"'token-classification' needs a column of words {TOKENS_CANDIDATES} and one of tags per "
            f"word; {where[0]} has the columns {list(train)}. Sentences with one label each are "
            "data.task 'classification'; or set data.tokens_column",
        )
    tokens = _both(train, evals, where, config.tokens_column, TOKENS_CANDIDATES, "tokens_column")
    tags = _both(train, evals, where, config.tags_column, TAGS_CANDIDATES, "tags_column")
    splits = []
    for table in (train, evals):
        words, row_tags = as_words(table, tokens), as_words(table, tags)
        for i, (w, t) in enumerate(zip(words, row_tags, strict=True)):
            if not all(isinstance(x, str) for x in w):
                raise table.error(i, f"column {tokens!r} holds {w!r}, expected words (text)")
            if len(w) != len(t):
                raise table.error(i, f"column {tags!r} has {len(t)} tags for {len(w)} words")
        splits.append((words, row_tags))
    flat = [[t for row in row_tags for t in row] for _, row_tags in splits]
    names = feature_names(features.get(tags))
    ends = {
        s: list(accumulate(len(r) for r in rt)) for s, (_, rt) in zip(("train", "eval"), splits, strict=True)
    }
    with _at_lines(train, evals, lambda split, k: bisect_right(ends[split], k)):
        flat_train, flat_eval, all_names = encode_class_labels(
            flat[0], flat[1], tags, names, subsampled=config.max_train_samples is not None
        )
    warn_rare_labels(flat_train, all_names, tags, f"{train.arg}: {train.source}")
    # Integer tags without names: which id is B-/I-/O is unknown, so no label names (autolora.eval.metrics),
    # unless they were mapped to 0..n-1 ({0, 3, 7}): then the names keep the tags as read.
    ids_as_read = all_names == [str(i) for i in range(len(all_names))]
    unnamed = names is None and ids_as_read and all(as_int(t) is not None for t in flat[0])
    encoded = []
    for (words, row_tags), ids in zip(splits, (flat_train, flat_eval), strict=True):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=config.max_length)
        labels, pos = [], 0
        for i, row in enumerate(row_tags):
            word_labels = ids[pos : pos + len(row)]
            pos += len(row)
            labels.append(_align(enc.word_ids(i), word_labels))
        encoded.append(_dataset(enc, labels))
    return TaskData(
        task=config.task,
        train=encoded[0],
        eval=encoded[1],
        num_labels=len(all_names),
        label_names=None if unnamed else all_names,
        metric="f1",
        collate=Collator(_tokenizer_pad_id(tokenizer), per_token_labels=True),
        tokenizer=tokenizer,
    )


def _align(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Subword labels: the first subword of each word gets the word's label, the rest and specials -100."""
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == prev else word_labels[w])
        prev = w
    return out


def _encode_causal(config, layout, tokenizer, train, evals, features, where) -> TaskData:
    """Prompt + completion (+ eos); the loss is on the completion only. No prompt column: plain LM.

    Labels are aligned with input_ids (not shifted): Hugging Face causal LMs shift them internally.
    """
    eos = (
        tokenizer.eos_token_id
        if tokenizer.eos_token_id is not None
        else getattr(tokenizer, "sep_token_id", None)
    )
    if eos is None:
        raise ValueError("tokenizer: causal-lm needs an eos (or sep) token to end completions with")
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None and bos != eos else []  # GPT-2's bos is its eos: not prepended
    explicit = config.source_column is not None or config.target_column is not None
    has_pair = explicit or (
        any(c in train for c in SOURCE_CANDIDATES) and any(c in train for c in TARGET_CANDIDATES)
    )
    if has_pair:
        src = _both(train, evals, where, config.source_column, SOURCE_CANDIDATES, "source_column")
        tgt = _both(train, evals, where, config.target_column, TARGET_CANDIDATES, "target_column")
    else:
        src, tgt = None, _both(train, evals, where, config.text_column, ("text",), "text_column")

    def encode(table: Table, split_where: str) -> tuple[datasets.Dataset, list[list[int]]]:
        targets = texts(table, tgt)
        prompts = texts(table, src) if src else [""] * len(targets)
        joined = [_join(p, t) for p, t in zip(prompts, targets, strict=True)]
        p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if src else [[]] * len(targets)
        t_ids = tokenizer(joined, add_special_tokens=False)["input_ids"]
        rows = [
            _lm_example(prefix + p, t + [eos], config.max_length) for p, t in zip(p_ids, t_ids, strict=True)
        ]
        ids = [r[0] for r in rows]
        cols = {
            "input_ids": ids,
            "attention_mask": [[1] * len(x) for x in ids],
            "labels": [r[1] for r in rows],
        }
        prompt_ids = [(prefix + p)[-(config.max_length - 1) :] for p in p_ids]
        return datasets.Dataset.from_dict(cols), prompt_ids

    train_ds, _ = encode(train, where[0])
    eval_ds, prompt_ids = encode(evals, where[1])
    eval_raw = None
    if src is not None:  # one entry per distinct prompt, all its completions as references
        grouped: dict[str, dict] = {}
        for p, ids, t in zip(evals[src], prompt_ids, evals[tgt], strict=True):
            grouped.setdefault(p, {"prompt": p, "prompt_ids": ids, "references": []})["references"].append(t)
        eval_raw = list(grouped.values())
    return TaskData(
        task="causal-lm",
        train=train_ds,
        eval=eval_ds,
        num_labels=0,
        label_names=None,
        metric="perplexity",
        collate=Collator(_tokenizer_pad_id(tokenizer), per_token_labels=True),
        eval_raw=eval_raw,
        tokenizer=tokenizer,
    )


def _join(prompt: str, target: str) -> str:
    """The completion text as it follows the prompt: a space between them unless one is already there
    (byte-level BPE encodes " word" and "word" differently, so the boundary matters)."""
    if prompt and not prompt[-1].isspace() and not target[:1].isspace():
        return " " + target
    return target


def _lm_example(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Truncate to max_length: the completion keeps up to half (more if the prompt is short), the
    prompt keeps its last tokens (the ones the completion follows). Returns (input_ids, labels)."""
    prompt_keep = min(len(prompt), max_length - min(len(completion), (max_length + 1) // 2))
    completion = completion[: max_length - prompt_keep]
    kept = prompt[len(prompt) - prompt_keep :]
    return kept + completion, [IGNORE_INDEX] * len(kept) + completion
