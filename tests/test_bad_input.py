"""Bad input, one table: every reader and flag gets one InputError naming the argument, the file and
the line, before any training; the CLI prints it and leaves the output directory as it was; legal but
suspicious input warns once per cause. No model is loaded (tokenizers only)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import tiny_config

from autolora.cli import main
from autolora.config import load_config
from autolora.data import DataConfig, load_task
from autolora.errors import InputError
from autolora.models import load_model, load_tokenizer

GOOD = "sentence\tlabel\na good film\t1\na bad film\t0\nfine\t1\nawful\t0\n"
TOKENS = "".join(
    json.dumps({"tokens": w.split(), "ner_tags": t.split()}) + "\n"
    for w, t in (("Peter lives here", "B-PER O O"), ("in Paris", "O B-LOC"), ("Anna left", "B-PER O"))
)


def data(train: str | bytes = GOOD, evals: str | bytes = GOOD, ext: str = ".tsv", **kw) -> Callable:
    """A case that writes train/dev files (text, or bytes as they are) and loads them."""

    def run(tmp: Path, tok) -> None:
        files = {}
        for name, body in (("train", train), ("dev", evals)):
            path = tmp / f"{name}{ext}"
            path.write_bytes(body if isinstance(body, bytes) else body.encode())
            files[f"{'eval' if name == 'dev' else name}_file"] = str(path)
        load_task(DataConfig(**{**files, **{k: v.format(tmp=tmp) if isinstance(v, str) else v
                                            for k, v in kw.items()}}), tok)  # fmt: skip

    return run


def model(make: Callable[[Path], str], load: Callable = load_tokenizer) -> Callable:
    """A case that builds a model path in tmp and loads a tokenizer (or a model) from it."""
    return lambda tmp, tok: load(make(tmp))


def config(name: str, body: str) -> Callable:
    def run(tmp: Path, tok) -> None:
        (tmp / name).write_text(body)
        load_config(tmp / name)

    return run


def cfg_only(tmp: Path) -> str:
    """A folder with a BERT config.json and nothing else (no weights, no tokenizer)."""
    folder = tmp / "config_only"
    tiny_config("bert", vocab_size=50, hidden=8, layers=1, heads=2).save_pretrained(folder)
    return str(folder)


def touch(tmp: Path, name: str) -> str:
    (tmp / name).mkdir(exist_ok=True) if "." not in name else (tmp / name).write_text("x")
    return str(tmp / name)


JSON_GOOD = json.dumps([{"text": "a", "label": 0}, {"text": "b", "label": 1}])
MNLI = "index\tpromptID\tsentence1\tsentence2\tlabel1\tgold_label\n"
ROW = "sentence\tlabel\na good film\t1\n"  # line 2; the bad row of each case is line 3
T, E = "train", "dev"  # the file stems: train.<ext>, dev.<ext>
# (case, the argument named, the file named or None, the line or None, what the message says), id
CASES = [
    pytest.param(
        data(ROW + "0\nbad\t0\n"), "data.train_file", T, 3, "has 1 tab-separated columns", id="missing field"
    ),
    pytest.param(
        data(ROW + "bad\t0\t1\n"),
        "data.train_file",
        T,
        3,
        "3 tab-separated columns .*separator",
        id="extra field",
    ),
    pytest.param(data(ROW + "\t0\n"), "data.train_file", T, 3, "column 'sentence' is empty", id="empty text"),
    pytest.param(
        data(ROW + " \t0\nok\t0\n"), "data.train_file", T, 3, "column 'sentence' is empty", id="blank text"
    ),
    pytest.param(
        data(evals=ROW + "\t0\n"), "data.eval_file", E, 3, "column 'sentence' is empty", id="empty eval text"
    ),
    pytest.param(
        data("1\tgood\n0\n", format="sentence-tsv"),
        "data.train_file",
        T,
        2,
        "1 tab-separated columns; this headerless layout expects 2",
        id="headerless missing",
    ),
    pytest.param(data(ROW + "bad\t\n"), "data.train_file", T, 3, "has no label", id="empty label"),
    pytest.param(
        data(ROW + "fine\tx\nbad\t0\nok\t1\n"),
        "data.train_file",
        T,
        3,
        "'x', the odd one out",
        id="stray label x",
    ),
    pytest.param(
        data("sentence\tlabel\na\tpos\nb\tneg\n", "sentence\tlabel\na\tpos\nc\tmeh\n"),
        "data.eval_file",
        E,
        3,
        "'meh', not one of the known labels",
        id="eval label unseen",
    ),
    pytest.param(
        data("sentence\tlabel\na\t0\nb\t2\n", "sentence\tlabel\nc\t1\n"),
        "data.eval_file",
        E,
        2,
        "'1'.*which no training example has",
        id="eval class not in train",
    ),
    pytest.param(
        data(
            MNLI + "0\t1\ta\tb\t-\tentailment\n1\t1\tc\td\t-\tneutral\n",
            MNLI + "0\t1\te\tf\t-\tcontradiction\n",
            format="mnli",
        ),
        "data.eval_file",
        E,
        2,
        "'contradiction'.*which no training example has",
        id="layout class not in train",
    ),  # fmt: skip
    # A single training class used to warn only (and integers built a head of max id + 1 classes).
    pytest.param(
        data("sentence\tlabel\na\t0\nb\t0\n", "sentence\tlabel\nc\t1\n", format="sst2"),
        "data.train_file",
        T,
        None,
        "every training example has the class 'negative'; classification needs at least 2 classes",
        id="layout single class",
    ),
    pytest.param(
        data("sentence\tlabel\na\t1\nb\t1\n", "sentence\tlabel\nc\t1\n"),
        "data.train_file",
        T,
        None,
        "column 'label': every training example has the class 1;",
        id="integer single class",
    ),
    pytest.param(
        data("sentence\tlabel\na\tpos\nb\tpos\n", "sentence\tlabel\nc\tneg\n"),
        "data.train_file",
        T,
        None,
        "every training example has the class 'pos';",
        id="named single class",
    ),
    pytest.param(
        data("sentence\tlabel\na\t1\nb\t1000000\n", "sentence\tlabel\nc\t1\nd\t2\n"),
        "data.eval_file",
        E,
        3,
        r"has label '2', which no training example has; .* the train labels \[1, 1000000\]",
        id="eval integer unseen after mapping",
    ),
    pytest.param(  # the seeded sample of 4 leaves out line 3, the only 2
        data(
            "sentence\tlabel\na\t0\nb\t2\nc\t1\nd\t0\ne\t1\n", "sentence\tlabel\nx\t2\n", max_train_samples=4
        ),
        "data.eval_file",
        E,
        2,
        r"has label '2', which no training example has; .*\[0, 1\]; max_train_samples drew no",
        id="eval integer unseen after subsampling",
    ),
    pytest.param(
        data(
            TOKENS.replace("B-LOC", "O").replace("B-PER", "O"),
            TOKENS,
            ext=".jsonl",
            task="token-classification",
        ),
        "data.train_file",
        T,
        None,
        "column 'ner_tags': every training example has the class 'O'",
        id="token single tag",
    ),  # fmt: skip
    pytest.param(
        data(evals=ROW + "c\t7\n"),
        "data.eval_file",
        E,
        3,
        "'7', which no training",
        id="eval label out of range",
    ),
    pytest.param(
        data(ROW.encode() + b"caf\xe9\t0\n"),
        "data.train_file",
        T,
        3,
        "not UTF-8: byte 0xe9.*Re-encode",
        id="latin-1 train",
    ),
    pytest.param(
        data(evals=b"sentence\tlabel\n\xff\t0\n"),
        "data.eval_file",
        E,
        2,
        "not UTF-8: byte 0xff",
        id="latin-1 eval",
    ),
    pytest.param(data(GOOD.encode("utf-16")), "data.train_file", T, 1, "UTF-16", id="utf-16"),
    pytest.param(data(""), "data.train_file", T, None, "has no rows", id="empty file"),
    pytest.param(data(evals="sentence\tlabel\n"), "data.eval_file", E, None, "has no rows", id="header only"),
    pytest.param(
        data(train_file="{tmp}"),
        "data.train_file",
        None,
        None,
        "is a folder; expected a file",
        id="folder as file",
    ),
    pytest.param(
        data(eval_file="{tmp}/nope.tsv"), "data.eval_file", "nope", None, "file not found", id="no such file"
    ),
    pytest.param(
        data("label\tlabel\n1\ta\n"),
        "data.train_file",
        T,
        1,
        r"columns \['label'\] twice",
        id="duplicate header",
    ),
    pytest.param(
        data("sentence\tlabel\na\t0.37\nb\t1.5\nc\t4.2\n"),
        "data.task",
        T,
        2,
        "a real number.*'regression'",
        id="regression labels, classification",
    ),
    pytest.param(
        data("sentence\tlabel\na\tpos\nb\tneg\nc\tpos\n", task="regression"),
        "data.task",
        T,
        2,
        "not numbers.*'classification'",
        id="names, regression",
    ),
    pytest.param(
        data(task="token-classification"), "data.task", T, None, "words .* tags", id="token task, no tags"
    ),
    pytest.param(
        data(TOKENS, TOKENS, ".jsonl"),
        "data.task",
        T,
        None,
        "'token-classification'",
        id="words and tags, classification",
    ),
    pytest.param(
        data(
            TOKENS + json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}) + "\n",
            TOKENS,
            ".jsonl",
            task="token-classification",
        ),
        "data.train_file",
        T,
        4,
        "1 tags for 2 words",
        id="tags for words",
    ),
    pytest.param(
        data('{"text": "a", "label": 0}\n{"text": "b", label: 1}\n', ext=".jsonl"),
        "data.train_file",
        T,
        2,
        "not valid JSON",
        id="bad JSON line",
    ),
    pytest.param(
        data('{"text": "a", "label": 0}\n[1, 2]\n', ext=".jsonl"),
        "data.train_file",
        T,
        2,
        "expected a JSON object",
        id="JSON line not an object",
    ),
    pytest.param(
        data(json.dumps([{"text": "a", "label": 0}, {"label": 1}]), JSON_GOOD, ".json"),
        "data.train_file",
        T,
        None,
        r"item 1: column 'text' holds None",
        id="JSON record without text",
    ),
    pytest.param(
        data(max_train_samples=0), "data.max_train_samples", None, None, ">= 1", id="max_train_samples 0"
    ),
    pytest.param(
        data(text_column="review"), "data.text_column", None, None, "no such column", id="unknown column"
    ),
    pytest.param(
        model(lambda tmp: str(tmp / "nope" / "model")),
        "model",
        "nope",
        None,
        "no such file",
        id="model path missing",
    ),
    pytest.param(
        model(lambda tmp: touch(tmp, "empty_model")),
        "model",
        "empty_model",
        None,
        "holds no model: no config.json",
        id="model folder, no config",
    ),
    pytest.param(
        model(lambda tmp: touch(tmp, "weights.bin")),
        "model",
        "weights.bin",
        None,
        "is a file",
        id="model is a file",
    ),
    pytest.param(
        model(cfg_only), "model", "config_only", None, "holds no tokenizer", id="model, no tokenizer"
    ),
    pytest.param(
        model(cfg_only, lambda p: load_model(p, "classification", 2)),
        "model",
        "config_only",
        None,
        "cannot load a model",
        id="model, no weights",
    ),
    pytest.param(
        lambda tmp, tok: load_config(tmp), "config", None, None, "is a folder", id="config is a folder"
    ),
    pytest.param(
        config("c.yaml", "k: 8\nlr_w: [1e-4\n"), "config", "c.yaml", 3, "not valid YAML", id="config bad YAML"
    ),
    pytest.param(
        config("c.json", '{"k": 8,\n "lr_w": }'),
        "config",
        "c.json",
        2,
        "not valid JSON",
        id="config bad JSON",
    ),
    pytest.param(
        config("c.yaml", "k: eight\n"), "k", None, None, "expected int, got 'eight'", id="config wrong type"
    ),
    pytest.param(
        config("c.yaml", "data:\n max_length: long\n"),
        "data.max_length",
        None,
        None,
        "expected int",
        id="config data wrong type",
    ),
]


@pytest.mark.parametrize("case, arg, file, line, says", CASES)
def test_bad_input_is_one_named_error(case, arg, file, line, says, tmp_path, tok):
    with pytest.raises(InputError) as info:
        case(tmp_path, tok)
    err, msg = info.value, str(info.value)
    assert isinstance(err, ValueError) and err.arg == arg and msg.startswith(f"{arg}: "), msg
    if file is not None:
        assert re.search(rf"{file}(\.\w+)?\b", msg), f"no file {file!r} in: {msg}"
    if line is not None:
        assert f", line {line}: " in msg, f"not line {line}: {msg}"
    assert re.search(says, msg), msg


def test_config_numbers_in_strings_are_numbers(tmp_path):
    """YAML reads 1e-4 as a string: the option still gets the number."""
    (tmp_path / "c.yaml").write_text("lr_w: 1e-4\nk: '4'\ndata:\n  max_length: 64\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.lr_w, cfg.k, cfg.data.max_length) == (1e-4, 4, 64)


# --------------------------------------------------------------------------------------- warnings


def caught(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in record if str(w.message).startswith("data.")]  # ours, not a library's


def test_suspicious_input_warns_once_per_cause(tmp_path, tok):
    many = "".join(f"film {i}\t{i % 2}\n" for i in range(8))
    # Labels 2 and 3 once each; blank lines 11 and 12 between rows.
    rare = "sentence\tlabel\n" + many + "odd one\t2\n\n\nother\t3\n"
    messages = caught(lambda: data(rare, GOOD)(tmp_path, tok))
    once = [m for m in messages if "only once" in m]
    blank = [m for m in messages if "blank line" in m]
    assert len(once) == 1 and "['2', '3']" in once[0] and "train.tsv" in once[0], messages
    assert len(blank) == 1 and "skipped 2 blank line(s)" in blank[0] and "line 11" in blank[0], messages
    assert len(messages) == 2, messages
    # Balanced labels, a trailing blank line: nothing to say.
    assert caught(lambda: data("sentence\tlabel\n" + many + "\n", GOOD)(tmp_path, tok)) == []


def test_binary_regression_labels_warn(tmp_path, tok):
    body = "sentence\tlabel\n" + "".join(f"film {i}\t{i % 2}\n" for i in range(6))
    messages = caught(lambda: data(body, body, task="regression")(tmp_path, tok))
    assert len(messages) == 1 and "only the values [0.0, 1.0]" in messages[0], messages


# -------------------------------------------------------------------------------------------- CLI


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["run", *argv, "--no-progress"])
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


@pytest.fixture
def previous_run(tmp_path) -> Path:
    """An output directory with a previous run's files, checkpoints included."""
    out = tmp_path / "out"
    (out / "search" / "checkpoint-2").mkdir(parents=True)
    (out / "retrain" / "checkpoint-2").mkdir(parents=True)
    (out / "adapter").mkdir()
    for name, body in (("config.json", b"{}"), ("ranks.json", b'{"ranks": {}}'), ("metrics.json", b"{}"),
                       ("search/result.pt", b"\x00search"), ("retrain/checkpoint-2/optimizer.pt", b"\x00opt"),
                       ("adapter/adapter_model.safetensors", b"\x01" * 64)):  # fmt: skip
        (out / name).write_bytes(body)
    return out


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--train-file", "{bad}"], r"data.train_file: .*train.tsv, line 3: column 'label' has label 'x'"),
        (["--train-file", "{latin1}"], r"data.train_file: .*latin1.tsv, line 2: not UTF-8"),
        (
            ["--model", "/path/that/does/not/exist"],
            r"model: /path/that/does/not/exist: no such file or folder",
        ),
        (["--task", "token-classification"], r"data.task: 'token-classification' needs a column of words"),
        (
            ["--hypergradient", "none", "--rank-rule", "alpha"],
            r"rank_rule: expected spectrum or effective-rank with hypergradient 'none' .* got 'alpha'",
        ),
    ],
)
def test_cli_error_exits_2_and_leaves_the_output_dir(flags, says, tmp_path, previous_run, capsys):
    """With --overwrite-output-dir every check runs before the previous run is touched."""
    bad = tmp_path / "train.tsv"
    bad.write_text(ROW + "fine\tx\nbad\t0\nok\t1\n")
    (tmp_path / "latin1.tsv").write_bytes(b"sentence\tlabel\nna\xefve\t1\nbad\t0\n")
    (tmp_path / "dev.tsv").write_text(GOOD)
    if "--train-file" not in flags:
        flags = [*flags, "--train-file", str(bad if "--task" in flags else tmp_path / "dev.tsv")]
    flags = [f.format(bad=bad, latin1=tmp_path / "latin1.tsv") for f in flags]
    before = snapshot(previous_run)
    code, err = cli(
        capsys, *flags, "--eval-file", str(tmp_path / "dev.tsv"), "--output-dir", str(previous_run),
        "--overwrite-output-dir",
    )  # fmt: skip
    assert code == 2, err
    assert err.startswith("autolora: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(says, err), err
    assert snapshot(previous_run) == before  # byte-identical, not even rewritten


@pytest.mark.parametrize(
    "remove, flags, says",
    [
        ([], [], r"output_dir: .* holds a finished run \(metrics.json\); .* --overwrite-output-dir"),
        (["metrics.json"], [], r"output_dir: .* holds an unfinished run .* pass --resume"),
        (
            ["metrics.json"],
            ["--resume", "--k", "4"],
            r"resume: .* other options or data.* k: was None, now 4",
        ),
    ],
    ids=["finished", "unfinished", "resume-other-options"],
)
def test_a_previous_run_is_refused_and_left_as_it_was(remove, flags, says, tmp_path, previous_run, capsys):
    for name in remove:
        (previous_run / name).unlink()
    (tmp_path / "dev.tsv").write_text(GOOD)
    before = snapshot(previous_run)
    code, err = cli(
        capsys, "--train-file", str(tmp_path / "dev.tsv"), "--output-dir", str(previous_run), *flags
    )
    assert code == 2 and re.search(says, err) and "Traceback" not in err, err
    assert snapshot(previous_run) == before


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--seed", "3"], r"seed: was 0, now 3"),
        (["--lr-beta", "0.5"], r"lr_beta: was 0.01, now 0.5"),
        (
            ["--train-file", "{other}"],
            r"data.train_file: was '.*dev.tsv', now '.*other.tsv'; data_fingerprint",
        ),
        (["--k", "4"], r"k: was 8, now 4"),
    ],
    ids=["seed", "lr_beta", "train_file", "k"],
)
def test_resume_lists_what_differs_from_the_run_it_continues(flags, says, tmp_path, capsys):
    """The folder's config.json is the run's; --resume with another option or other data stops before
    anything is read or written, naming each difference (and only those)."""
    from autolora.config import load_config
    from autolora.io.atomic import atomic_write_json
    from autolora.run_folder import run_record

    (tmp_path / "dev.tsv").write_text(GOOD)
    (tmp_path / "other.tsv").write_text(GOOD + "another\t1\n")
    out = tmp_path / "out"
    started = {"data.train_file": str(tmp_path / "dev.tsv"), "output_dir": str(out), "progress": False}
    atomic_write_json(out / "config.json", run_record(load_config(None, started)))
    (out / "search" / "checkpoint-2").mkdir(parents=True)
    before = snapshot(out)
    flags = [f.format(other=tmp_path / "other.tsv") for f in flags]
    if "--train-file" not in flags:
        flags += ["--train-file", str(tmp_path / "dev.tsv")]
    code, err = cli(capsys, "--resume", "--output-dir", str(out), *flags)
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"^autolora: error: resume: .* other options or data", err), err
    assert re.search(says, err), err
    assert err.count(" was ") == (2 if "--train-file" in flags[:1] else 1), err
    assert snapshot(out) == before


def test_cli_bad_config_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("k: [1\n")
    code, err = cli(capsys, "--config", str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "o"))
    assert code == 2 and re.search(r"^autolora: error: config: .*c.yaml, line 2: not valid YAML", err), err


def test_unseen_eval_class_after_subsampling_warns(tmp_path, tok):
    """max_train_samples may draw no example of a class: a warning then, not the error above."""
    rows = "".join(f"{i}\t1\ta\tb\t-\t{c}\n" for i, c in enumerate(["entailment"] * 2 + ["neutral"] * 2))
    train, evals = MNLI + rows, MNLI + "0\t1\te\tf\t-\tcontradiction\n"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data(train, evals, format="mnli", max_train_samples=3)(tmp_path, tok)  # any 3 of 4 hold both
    messages = [str(w.message) for w in record if "eval class" in str(w.message)]
    assert len(messages) == 1 and "['contradiction']" in messages[0], messages
