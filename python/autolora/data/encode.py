"""Task data: tokenize what readers.py read and check its labels before any training starts.

Where data enters: `load_task(DataConfig, tokenizer)` reads the train and eval files, checks every
column and label before any training starts, and returns a `TaskData` whose datasets hold only
`input_ids`, `attention_mask`, [`token_type_ids`] and `labels`. `split_train_val` makes the paper's
seeded 1:1 split D_tr : D_val of the training set (stratified for classification).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from autolora.config import DataConfig
from autolora.data.collate import Collator, TaskData
from autolora.data.labels import as_int, encode_class_labels, encode_scores
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
    as_strings,
    as_words,
    feature_names,
    find_column,
    load_hub,
    read_file,
    subset,
)
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

    Every problem with the data (missing file or column, empty split, bad label) raises a ValueError
    naming the argument or column here, before any model is touched.
    """
    layout = _check_config(config, tokenizer)
    train, evals, features, where = _read_splits(config, layout)
    train = subset(train, config.max_train_samples, "max_train_samples")
    evals = subset(evals, config.max_eval_samples, "max_eval_samples")
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
        raise ValueError(f"task: {config.task!r} is not one of {TASK_TYPES}")
    if config.format not in FORMATS:
        raise ValueError(f"format: {config.format!r} is not one of {FORMATS}")
    if not isinstance(config.max_length, int) or config.max_length < 2:
        raise ValueError(f"max_length: must be an integer >= 2, got {config.max_length!r}")
    if tokenizer is None:
        raise ValueError("tokenizer: required (a Hugging Face tokenizer)")
    layout = LAYOUTS.get(config.format)
    glue_task = _hub_glue_layout(config)
    expected = (layout or glue_task).task if (layout or glue_task) else None
    if expected is not None and expected != config.task:
        raise ValueError(
            f"task: {config.task!r} does not fit format={config.format!r}/hub_config={config.hub_config!r}, "
            f"which is a {expected} task"
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
        return train, evals, features, (f"hub dataset {config.hub_dataset!r} (train)", "the eval split")
    train_file, eval_file = config.train_file, config.eval_file
    if train_file is None:
        if config.format != "cola":
            raise ValueError(
                "train_file: required (or set hub_dataset, or format='cola' for the bundled CoLA)"
            )
        train_file = str(BUNDLED_COLA / "train.tsv")
        eval_file = eval_file or str(BUNDLED_COLA / "dev.tsv")
    if eval_file is None:
        raise ValueError("eval_file: required with train_file (the dev/test set the final score is taken on)")
    train = read_file(train_file, layout, "train_file")
    evals = read_file(eval_file, layout, "eval_file")
    return train, evals, {}, (f"train_file '{train_file}'", f"eval_file '{eval_file}'")


def _both(train: Table, evals: Table, where, explicit, candidates, arg) -> str:
    """Resolve a column on the train split and require the same column in the eval split."""
    name = find_column(train, explicit, candidates, arg, where[0])
    find_column(evals, name, (), arg, where[1])
    return name


def _tokenizer_pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):  # GPT-2 style tokenizers have no pad: pad with eos
        if getattr(tokenizer, attr, None) is not None:
            return int(getattr(tokenizer, attr))
    raise ValueError("tokenizer: has neither a pad token nor an eos token to pad batches with")


def _dataset(enc: Any, labels: list) -> datasets.Dataset:
    cols = {k: list(enc[k]) for k in MODEL_INPUTS if k in enc}
    return datasets.Dataset.from_dict({**cols, "labels": labels})


def _encode_sequences(config, layout, tokenizer, train, evals, features, where) -> TaskData:
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
    if config.task == "regression":
        y_train = encode_scores(train[label], label, "train")
        y_eval = encode_scores(evals[label], label, "eval")
        num_labels, names = 1, None
    else:
        fixed = layout.names if layout else feature_names(features.get(label))
        string_labels = bool(layout and layout.string_labels)
        y_train, y_eval, names = encode_class_labels(train[label], evals[label], label, fixed, string_labels)
        num_labels = len(names)

    def tok(table: Table, split_where: str) -> Any:
        texts = as_strings(table[text], text, split_where)
        pairs = as_strings(table[pair], pair, split_where) if pair else None
        return tokenizer(texts, pairs, truncation=True, max_length=config.max_length)

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


def _encode_tokens(config, layout, tokenizer, train, evals, features, where) -> TaskData:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "tokenizer: token-classification needs a fast tokenizer (word_ids() aligns tags to subwords); "
            f"got {type(tokenizer).__name__}"
        )
    tokens = _both(train, evals, where, config.tokens_column, TOKENS_CANDIDATES, "tokens_column")
    tags = _both(train, evals, where, config.tags_column, TAGS_CANDIDATES, "tags_column")
    splits = []
    for table, split_where in ((train, where[0]), (evals, where[1])):
        words, row_tags = (
            as_words(table[tokens], tokens, split_where),
            as_words(table[tags], tags, split_where),
        )
        for i, (w, t) in enumerate(zip(words, row_tags, strict=True)):
            as_strings(w, tokens, f"{split_where}, row {i},")
            if len(w) != len(t):
                raise ValueError(f"{tags}: row {i} of {split_where} has {len(t)} tags for {len(w)} words")
        splits.append((words, row_tags))
    flat = [[t for row in row_tags for t in row] for _, row_tags in splits]
    names = feature_names(features.get(tags))
    flat_train, flat_eval, all_names = encode_class_labels(flat[0], flat[1], tags, names)
    # Integer tags without names: which id is B-/I-/O is unknown, so no label names (see autolora.eval.metrics).
    unnamed = names is None and all(as_int(t) is not None for t in flat[0])
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
        targets = as_strings(table[tgt], tgt, split_where)
        prompts = as_strings(table[src], src, split_where) if src else [""] * len(targets)
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
