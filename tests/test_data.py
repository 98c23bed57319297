"""load_task / split_train_val / Collator on the bundled CoLA and small files written per test."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from helpers import word_level_tokenizer

from autolora.data import (
    BUNDLED_COLA,
    Collator,
    DataConfig,
    default_data_config,
    load_task,
    split_train_val,
)
from autolora.eval.metrics import compute_metrics

MODEL_COLUMNS = ["input_ids", "attention_mask", "token_type_ids", "labels"]


@pytest.fixture(scope="module")
def wordlevel_tok():
    """A GPT-2-like tokenizer built offline: word level, eos == bos, no pad token."""
    return word_level_tokenizer("name is the eagle food type coffee shop area riverside a serves near")


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def pair_files(tmp_path, train: str, evals: str, ext: str = ".tsv") -> dict:
    return {
        "train_file": write(tmp_path / f"train{ext}", train),
        "eval_file": write(tmp_path / f"dev{ext}", evals),
    }


def decode(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=True)


# ---------------------------------------------------------------------------------- bundled CoLA


@pytest.mark.slow
def test_bundled_cola_default(tok):
    data = load_task(default_data_config(), tok)
    assert data.task == "classification" and (len(data.train), len(data.eval)) == (8551, 1043)
    assert data.train.column_names == MODEL_COLUMNS and data.eval.column_names == MODEL_COLUMNS
    assert data.num_labels == 2 and data.label_names == ["unacceptable", "acceptable"]
    assert data.metric == "matthews_correlation" and data.higher_is_better
    first = BUNDLED_COLA.joinpath("train.tsv").read_text().splitlines()[0].split("\t")
    assert data.train[0]["labels"] == int(first[1])
    assert decode(tok, data.train[0]["input_ids"]) == tok.decode(
        tok(first[3])["input_ids"], skip_special_tokens=True
    )
    assert sorted(set(data.train["labels"])) == [0, 1]


@pytest.mark.slow
def test_max_samples_is_a_fixed_random_subset(tok):
    cfg = DataConfig(format="cola", max_train_samples=50, max_eval_samples=20)
    a, b = load_task(cfg, tok), load_task(cfg, tok)
    assert (len(a.train), len(a.eval)) == (50, 20)
    assert a.train["input_ids"] == b.train["input_ids"]
    # Not just the first 50 rows (CoLA's file is grouped by source).
    full = load_task(DataConfig(format="cola", max_eval_samples=1), tok).train
    assert a.train["input_ids"] != full.select(range(50))["input_ids"]


# --------------------------------------------------------------------------------- GLUE layouts

GLUE_FILES = {
    # format: (train text, eval text, expected train labels, num_labels, has pair)
    "cola": ("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n", "x\t1\t\tA dog ran.\n", [1, 0], 2, False),
    "sst2": (
        'sentence\tlabel\ngood film "quoted"\t1\nbad film\t0\n',
        "sentence\tlabel\nok\t1\n",
        [1, 0],
        2,
        False,
    ),
    "mrpc": (
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "yes".\tHe agreed.\n0\t3\t4\tA b.\tC d.\n',
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t5\t6\tE f.\tG h.\n",
        [1, 0],
        2,
        True,
    ),
    "rte": (
        "index\tsentence1\tsentence2\tlabel\n0\tA man runs.\tSomeone moves.\tentailment\n"
        "1\tA man runs.\tNobody moves.\tnot_entailment\n",
        "index\tsentence1\tsentence2\tlabel\n0\tX.\tY.\tnot_entailment\n",
        [0, 1],
        2,
        True,
    ),
    "qnli": (
        "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tnot_entailment\n1\tWhat?\tThat.\tentailment\n",
        "index\tquestion\tsentence\tlabel\n0\tWhy?\tBecause.\tentailment\n",
        [1, 0],
        2,
        True,
    ),
    "mnli": (
        "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
        "0\t1\tA.\tB.\tneutral\tneutral\n1\t2\tC.\tD.\tentailment\tentailment\n2\t3\tE.\tF.\tx\tcontradiction\n",
        "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n0\t9\tG.\tH.\tneutral\tneutral\n",
        [2, 1, 0],
        3,
        True,
    ),
    "qqp": (
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t1\t2\tHow?\tHow so?\t1\n1\t3\t4\tA?\tB?\t0\n",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n2\t5\t6\tC?\tD?\t0\n",
        [1, 0],
        2,
        True,
    ),
    "sentence-tsv": ("1\ta fine film\n0\ta dull film\n2\tmeh\n", "0\tdull\n", [1, 0, 2], 3, False),
}


@pytest.mark.parametrize("fmt", sorted(GLUE_FILES))
def test_glue_layout_readers(tmp_path, tok, fmt):
    train, evals, labels, num_labels, has_pair = GLUE_FILES[fmt]
    data = load_task(DataConfig(format=fmt, **pair_files(tmp_path, train, evals)), tok)
    assert data.train.column_names == MODEL_COLUMNS
    assert data.train["labels"] == labels and data.num_labels == num_labels
    assert len(data.label_names) == num_labels and len(data.eval) == 1
    assert data.metric == ("matthews_correlation" if fmt == "cola" else "accuracy")
    assert any(1 in row for row in data.train["token_type_ids"]) == has_pair
    # Quotes are text in GLUE TSVs, not CSV quoting.
    if fmt == "sst2":
        assert '" quoted "' in decode(tok, data.train[0]["input_ids"])


def test_stsb_layout_is_regression(tmp_path, tok):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    train = (
        header
        + "0\tg\tf\t2012\t1\ts\ts\tA plane.\tAn air plane.\t5.000\n1\tg\tf\t2012\t2\ts\ts\tA.\tB.\t0.5\n"
    )
    data = load_task(DataConfig(task="regression", format="stsb", **pair_files(tmp_path, train, train)), tok)
    assert data.train["labels"] == [5.0, 0.5] and data.num_labels == 1 and data.label_names is None
    assert data.metric == "spearman" and data.higher_is_better
    batch = data.collate([data.train[0], data.train[1]])
    assert batch["labels"].dtype == torch.float32


# -------------------------------------------------------------------------------- auto formats


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".json", ".jsonl"])
def test_auto_formats_and_string_labels(tmp_path, tok, ext):
    rows = [{"text": "great, really great", "label": "pos"}, {"text": "awful", "label": "neg"}]
    rows += [{"text": "fine", "label": "pos"}]
    if ext == ".tsv":
        body = "text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows)
    elif ext == ".csv":
        body = "text,label\n" + "".join(f'"{r["text"]}",{r["label"]}\n' for r in rows)
    elif ext == ".json":
        body = json.dumps(rows)
    else:
        body = "".join(json.dumps(r) + "\n" for r in rows)
    data = load_task(DataConfig(**pair_files(tmp_path, body, body, ext)), tok)
    assert data.label_names == ["neg", "pos"] and data.train["labels"] == [1, 0, 1]
    assert decode(tok, data.train[0]["input_ids"]) == "great, really great"
    assert data.train.column_names == MODEL_COLUMNS


def test_named_columns_and_pairs(tmp_path, tok):
    rows = [{"q": "is it?", "a": "yes it is", "y": 0}, {"q": "why?", "a": "no reason", "y": 1}]
    body = json.dumps({"data": rows})
    cfg = DataConfig(
        text_column="q", text_pair_column="a", label_column="y", **pair_files(tmp_path, body, body, ".json")
    )
    data = load_task(cfg, tok)
    assert data.train["labels"] == [0, 1] and data.label_names == ["0", "1"]
    assert decode(tok, data.train[1]["input_ids"]) == "why? no reason"
    assert 1 in data.train[1]["token_type_ids"]


def test_integer_labels_written_as_floats(tmp_path, tok):
    body = "sentence,label\na,1.0\nb,0.0\nc,2\n"
    data = load_task(DataConfig(**pair_files(tmp_path, body, body, ".csv")), tok)
    assert data.train["labels"] == [1, 0, 2] and data.label_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    "labels, ids, names",
    [
        # Before: a head of max id + 1 classes (1000001 for the first: 385M parameters), no error.
        (["0", "1", "1000000", "1"], [0, 1, 2, 1], ["0", "1", "1000000"]),
        (["2", "1", "2"], [1, 0, 1], ["1", "2"]),  # before: 3 classes, class 0 never seen
        (["1", "-1", "0", "10"], [2, 0, 1, 3], ["-1", "0", "1", "10"]),  # numeric order, not "-1" < "10"
        (["1", "0", "2"], [1, 0, 2], ["0", "1", "2"]),  # exactly 0..n-1: ids as they are
    ],
)
def test_integer_labels_are_classes_not_sizes(tmp_path, tok, labels, ids, names):
    body = "sentence\tlabel\n" + "".join(f"s{i}\t{v}\n" for i, v in enumerate(labels))
    data = load_task(DataConfig(**pair_files(tmp_path, body, body)), tok)
    assert data.num_labels == len(names) and data.label_names == names
    assert data.train["labels"] == ids and data.eval["labels"] == ids


def test_integer_tags_are_classes_not_sizes(tmp_path, tok):
    """Tags {0, 3, 7}: 3 classes whose names keep the tags; scored as the integer tags they were."""
    body = "tokens\ttags\nPeter lives here\t7 0 0\nin Paris\t0 3\n"
    data = load_task(DataConfig(task="token-classification", **pair_files(tmp_path, body, body)), tok)
    assert data.num_labels == 3 and data.label_names == ["0", "3", "7"]
    assert data.train[1]["labels"] == [-100, 0, 1, -100]
    refs = [[-100, 2, 0, 0, -100], [-100, 0, 1, -100]]
    with pytest.warns(UserWarning, match="integer tags"):  # token-level over the tags != 0, as for ids
        scores = compute_metrics("token-classification", refs, refs, data.label_names)
    assert scores["f1"] == 1.0


def test_guessed_pair_columns(tmp_path, tok):
    body = "premise,hypothesis,label\nA man.,A person.,0\nA dog.,A cat.,1\n"
    data = load_task(DataConfig(**pair_files(tmp_path, body, body, ".csv")), tok)
    assert decode(tok, data.train[0]["input_ids"]) == "a man. a person."


def test_truncation_and_dynamic_padding(tmp_path, tok):
    long = " ".join(["word"] * 100)
    body = f"sentence\tlabel\n{long}\t1\nshort one\t0\nthree words here\t1\n"
    data = load_task(DataConfig(max_length=16, **pair_files(tmp_path, body, body)), tok)
    lengths = [len(x) for x in data.train["input_ids"]]
    assert lengths == [16, 4, 5]
    batch = data.collate([data.train[1], data.train[2]])
    assert batch["input_ids"].shape == (2, 5)  # the longest in the batch, not max_length
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"][0, 4] == tok.pad_token_id and batch["labels"].tolist() == [0, 1]
    assert batch["labels"].dtype == torch.long


def test_collator_pads_token_labels_with_ignore_index():
    collate = Collator(pad_token_id=7, per_token_labels=True)
    rows = [{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [-100, 4, 5]}]
    rows += [{"input_ids": [1], "attention_mask": [1], "labels": [3]}]
    batch = collate(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 7, 7]]
    assert batch["labels"].tolist() == [[-100, 4, 5], [3, -100, -100]]
    assert "token_type_ids" not in batch


# ---------------------------------------------------------------------------- token classification


def test_token_classification_aligns_first_subword(tmp_path, tok):
    rows = [
        {"tokens": ["EU", "rejects", "Germanyish", "lamb"], "ner_tags": ["B-ORG", "O", "B-MISC", "O"]},
        {"tokens": ["Peter", "Blackburn"], "ner_tags": ["B-PER", "I-PER"]},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    data = load_task(
        DataConfig(task="token-classification", **pair_files(tmp_path, body, body, ".jsonl")), tok
    )
    names = data.label_names
    assert names == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"] and data.num_labels == 5
    assert data.metric == "f1" and data.train.column_names == MODEL_COLUMNS
    enc = tok(rows[0]["tokens"], is_split_into_words=True)
    assert enc.word_ids() == [None, 0, 1, 2, 2, 3, None]  # "Germanyish" is two subwords
    expected = [
        -100,
        names.index("B-ORG"),
        names.index("O"),
        names.index("B-MISC"),
        -100,
        names.index("O"),
        -100,
    ]
    assert data.train[0]["labels"] == expected
    batch = data.collate([data.train[0], data.train[1]])
    assert batch["labels"][1, -1] == -100 and batch["input_ids"].shape[1] == 7


def test_token_classification_tsv_strings_and_int_tags(tmp_path, tok):
    body = "tokens\ttags\nPeter lives here\t1 0 0\nin Paris\t0 2\n"
    data = load_task(DataConfig(task="token-classification", **pair_files(tmp_path, body, body)), tok)
    assert data.label_names is None and data.num_labels == 3  # integer tags: names unknown
    assert data.train[1]["labels"] == [-100, 0, 2, -100]


def test_token_classification_errors(tmp_path, tok):
    body = json.dumps([{"tokens": ["a", "b"], "tags": ["O"]}])
    with pytest.raises(
        ValueError, match=r"data.train_file: .*train.json, item 0: column 'tags' has 1 tags for 2 words"
    ):
        load_task(DataConfig(task="token-classification", **pair_files(tmp_path, body, body, ".json")), tok)

    class SlowTokenizer:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        load_task(
            DataConfig(task="token-classification", **pair_files(tmp_path, body, body, ".json")),
            SlowTokenizer(),
        )


# ------------------------------------------------------------------------------------- causal-lm


def test_causal_lm_prompt_completion(tmp_path, wordlevel_tok):
    rows = [
        {"source": "name the eagle", "target": "the eagle is a coffee shop"},
        {"source": "name the eagle", "target": "the eagle serves coffee"},
        {"source": "area riverside", "target": "near the riverside"},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    data = load_task(
        DataConfig(task="causal-lm", **pair_files(tmp_path, body, body, ".jsonl")), wordlevel_tok
    )
    assert data.num_labels == 0 and data.metric == "perplexity" and not data.higher_is_better
    assert data.train.column_names == ["input_ids", "attention_mask", "labels"]
    eos = wordlevel_tok.eos_token_id
    ids, labels = data.train[0]["input_ids"], data.train[0]["labels"]
    prompt = wordlevel_tok("name the eagle")["input_ids"]
    completion = wordlevel_tok("the eagle is a coffee shop")["input_ids"]
    assert ids == prompt + completion + [eos]  # GPT-2 style: bos == eos, so no bos prepended
    assert labels == [-100] * len(prompt) + completion + [eos]
    # No pad token: padded with eos, labels padded with -100.
    batch = data.collate([data.train[1], data.train[0]])
    assert batch["input_ids"][0, -1] == eos and batch["labels"][0, -1] == -100
    assert batch["attention_mask"][0].tolist() == [1] * len(data.train[1]["input_ids"]) + [0] * 2
    assert data.eval_raw == [
        {
            "prompt": "name the eagle",
            "prompt_ids": prompt,
            "references": [rows[0]["target"], rows[1]["target"]],
        },
        {
            "prompt": "area riverside",
            "prompt_ids": wordlevel_tok("area riverside")["input_ids"],
            "references": [rows[2]["target"]],
        },
    ]


def test_causal_lm_truncation_keeps_the_completion(tmp_path, wordlevel_tok):
    long_prompt = " ".join(["coffee"] * 30)
    body = json.dumps([{"prompt": long_prompt, "completion": "near the riverside"}])
    data = load_task(
        DataConfig(task="causal-lm", max_length=8, **pair_files(tmp_path, body, body, ".json")), wordlevel_tok
    )
    labels = data.train[0]["labels"]
    assert len(data.train[0]["input_ids"]) == 8
    assert labels[-4:] == wordlevel_tok("near the riverside")["input_ids"] + [wordlevel_tok.eos_token_id]
    assert labels[:4] == [-100] * 4


def test_causal_lm_plain_text_and_bert_tokenizer(tmp_path, tok):
    body = "text\nthe cat sat\na dog ran far\n"
    data = load_task(DataConfig(task="causal-lm", **pair_files(tmp_path, body, body, ".csv")), tok)
    # BERT has no eos: [SEP] ends the text; no prompt, so every token is a target.
    assert data.train[0]["input_ids"] == tok("the cat sat", add_special_tokens=False)["input_ids"] + [
        tok.sep_token_id
    ]
    assert data.train[0]["labels"] == data.train[0]["input_ids"] and data.eval_raw is None


# ---------------------------------------------------------------------------------------- errors


def bad(
    tmp_path, tok, match: str, train: str = "sentence\tlabel\na\t0\nb\t1\n", evals: str | None = None, **kw
):
    files = pair_files(tmp_path, train, train if evals is None else evals)
    with pytest.raises(ValueError, match=match):
        load_task(DataConfig(**{**files, **kw}), tok)


def test_errors_name_the_argument(tmp_path, tok):
    bad(tmp_path, tok, "task: 'ner' is not one of", task="ner")
    bad(tmp_path, tok, "format: 'glue' is not one of", format="glue")
    bad(tmp_path, tok, r"train_file: .*nope.tsv: file not found", train_file=str(tmp_path / "nope.tsv"))
    bad(tmp_path, tok, r"eval_file: .*nope.tsv: file not found", eval_file=str(tmp_path / "nope.tsv"))
    bad(tmp_path, tok, "eval_file: required", eval_file=None)
    bad(tmp_path, tok, "train_file: required", train_file=None)
    bad(tmp_path, tok, "max_length", max_length=1)
    bad(tmp_path, tok, r"task: 'classification' does not fit format='stsb'", format="stsb")
    txt = write(tmp_path / "x.txt", "a\n")
    bad(tmp_path, tok, r"cannot tell the format .* '\.txt'", train_file=txt)
    with pytest.raises(ValueError, match="tokenizer: required"):
        load_task(default_data_config(), None)


def test_column_errors_list_the_columns_found(tmp_path, tok):
    bad(
        tmp_path,
        tok,
        r"text_column: none of .* columns found: \['words', 'label'\]",
        train="words\tlabel\na\t0\n",
    )
    bad(
        tmp_path,
        tok,
        r"label_column: 'y': no such column .* columns found: \['sentence', 'label'\]",
        label_column="y",
    )
    bad(
        tmp_path,
        tok,
        r"label_column: 'label': no such column in eval_file .* columns found: \['sentence'\]",
        evals="sentence\nx\n",
    )
    bad(tmp_path, tok, r"headerless TSV", train="0\ta b\n1\tc d\n")
    bad(tmp_path, tok, r"has 2 tab-separated columns; .* expects 4", format="cola")


def test_empty_splits(tmp_path, tok):
    bad(tmp_path, tok, "train_file: .* has no rows", train="")
    bad(tmp_path, tok, "eval_file: .* has no rows", evals="sentence\tlabel\n")
    bad(tmp_path, tok, "eval_file: .* has no rows", evals="[]", eval_file=write(tmp_path / "e.json", "[]"))


def test_label_errors(tmp_path, tok):
    bad(
        tmp_path,
        tok,
        r"data.eval_file: .*dev.tsv, line 2: column 'label' has label '2', which no training example has; "
        r"the eval labels must be among the train labels \[0, 1\]",
        evals="sentence\tlabel\nx\t2\n",
    )
    bad(tmp_path, tok, r"line 2: column 'label' has label 'maybe', not one of the known .*\['neg', 'pos'\]",
        train="sentence\tlabel\na\tpos\nb\tneg\n", evals="sentence\tlabel\nc\tmaybe\n")  # fmt: skip
    bad(tmp_path, tok, "at least 2 classes", train="sentence\tlabel\na\t0\nb\t0\n")
    bad(tmp_path, tok, "at least 2 classes", train="sentence\tlabel\na\tx\nb\tx\n")
    bad(tmp_path, tok, r"train.tsv, line 3: column 'label' has 'high'; regression needs a finite number",
        train="sentence\tlabel\na\t0.5\nb\thigh\n", task="regression")  # fmt: skip
    bad(tmp_path, tok, r"dev.tsv, line 2: column 'label' has label 'not_sure'", format="rte",
        train="index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
        evals="index\tsentence1\tsentence2\tlabel\n0\ta\tb\tnot_sure\n")  # fmt: skip
    bad(tmp_path, tok, r"dev.tsv, line 2: column 'label' .* labels must be integers in 0..1", format="sst2",
        evals="sentence\tlabel\nc\t3\n")  # fmt: skip
    rows = json.dumps([{"text": "a", "label": 0}, {"text": None, "label": 1}])
    bad(tmp_path, tok, r"data.train_file: .*n.json, item 1: column 'text' holds None, expected text",
        train_file=write(tmp_path / "n.json", rows),
        eval_file=write(tmp_path / "m.json", rows))  # fmt: skip


# --------------------------------------------------------------------------------------------- hub


def test_hub_dataset_uses_class_label_names(monkeypatch, tok):
    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["no", "yes"])}
    )
    split = datasets.Dataset.from_dict({"sentence": ["a b", "c"], "label": [1, 0]}, features=feats)
    dd = datasets.DatasetDict({"train": split, "validation": split.select([0])})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or dd)
    data = load_task(DataConfig(hub_dataset="nyu-mll/glue", hub_config="cola"), tok)
    assert calls == [("nyu-mll/glue", "cola")]
    assert data.label_names == ["no", "yes"] and data.train["labels"] == [1, 0] and len(data.eval) == 1
    assert data.metric == "matthews_correlation"


def test_hub_errors(monkeypatch, tok):
    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ValueError, match=r"hub_dataset='glue', hub_config='sst2': cannot load .*no network"):
        load_task(DataConfig(hub_dataset="glue", hub_config="sst2"), tok)
    with pytest.raises(ValueError, match=r"does not fit .*hub_config='stsb'"):
        load_task(DataConfig(hub_dataset="glue", hub_config="stsb"), tok)


# -------------------------------------------------------------------------------- split_train_val


def labelled(labels) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"input_ids": [[i] for i in range(len(labels))], "labels": list(labels)}
    )


def test_split_is_one_to_one_stratified_and_seeded():
    labels = [0] * 70 + [1] * 30 + [2] * 20
    ds = labelled(labels)
    tr, val = split_train_val(ds, seed=3, stratify=True)
    assert (len(tr), len(val)) == (60, 60)
    ids_tr, ids_val = [r[0] for r in tr["input_ids"]], [r[0] for r in val["input_ids"]]
    assert sorted(ids_tr + ids_val) == list(range(120))  # disjoint, complete
    for c, n in ((0, 70), (1, 30), (2, 20)):
        assert list(tr["labels"]).count(c) == n // 2 and list(val["labels"]).count(c) == n // 2
    again, _ = split_train_val(ds, seed=3, stratify=True)
    other, _ = split_train_val(ds, seed=4, stratify=True)
    assert again["input_ids"] == tr["input_ids"] and other["input_ids"] != tr["input_ids"]


def test_split_unstratified_odd_and_errors():
    tr, val = split_train_val(labelled([0.5, 1.5, 2.5]), seed=0, stratify=False)
    assert (len(tr), len(val)) == (2, 1)
    tr, val = split_train_val(labelled([0, 1]), seed=0, stratify=False)
    assert (len(tr), len(val)) == (1, 1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        split_train_val(labelled([1]), seed=0, stratify=False)
    with pytest.raises(ValueError, match="stratify: needs one integer class label"):
        split_train_val(labelled([0.5, 1.5]), seed=0, stratify=True)
    with pytest.warns(UserWarning, match="splitting at random"):
        tr, val = split_train_val(labelled([0, 0, 0, 1]), seed=0, stratify=True)
    assert (len(tr), len(val)) == (2, 2)


def test_split_bundled_cola_keeps_the_class_balance(tok):
    data = load_task(DataConfig(format="cola", max_train_samples=600, max_eval_samples=1), tok)
    tr, val = split_train_val(data.train, seed=0, stratify=True)
    p_all, p_tr, p_val = (float(np.mean(d["labels"])) for d in (data.train, tr, val))
    assert abs(p_tr - p_all) < 1 / 300 and abs(p_val - p_all) < 1 / 300
