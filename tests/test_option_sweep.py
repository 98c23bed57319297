"""Every `autolora run` option driven through bad values: each is refused with exit status 2, a message
naming the option, no traceback, and a previous run's files left byte for byte.

The options are enumerated from the parser, so a new numeric or choice option is swept without
editing this file; a new text option must be classified below (a test fails until it is).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import re
from pathlib import Path

import pytest

from autolora.cli import build_parser, main
from autolora.config import NESTED, PipelineConfig, load_config

# Free text the config cannot judge alone, each with where it is checked instead.
FREE_TEXT = {
    "model": "a path or Hub name: checked when the model loads (tests/test_bad_input.py)",
    "device": "a torch device name: checked by torch when the run starts",
    "output_dir": "a folder: checked when it is created (tests/test_cli.py); this sweep writes into one",
    "ranks": "a ranks.json or a JSON map: read when the run starts (tests/test_pipeline.py)",
    "targets": "module names or patterns: matched against the model when adapters are injected",
    "trainable": "module names or patterns: matched against the model when adapters are injected",
    "report_to": "logger names: transformers checks them when the Trainer is built",
    "data.format": "a layout name or auto: checked with the file it reads (tests/test_bad_input.py)",
    **{
        f"data.{name}": "a file, column or dataset name: checked when the data is read (test_bad_input)"
        for name in (
            "train_file",
            "eval_file",
            "text_column",
            "text_pair_column",
            "label_column",
            "tokens_column",
            "tags_column",
            "source_column",
            "target_column",
            "hub_dataset",
            "hub_config",
        )
    },
}
# Text options the config does check, with values it must refuse ({tmp}: a folder of this test).
TEXT_BAD: dict[str, list[str]] = {}
NUMBERS = ["0", "-1", "nan", "inf", "1e30", "abc"]
# The rules that keep valid values out of the table (test_excluded_values_are_valid holds them to it):
# 0 is a legitimate value of these (a seed, "no warmup", "no weight decay", "no dropout", "no
# generation", "no n-gram constraint", xi = 0 is a first-order-like lookahead, a 0 length penalty).
ZERO_VALID = {
    "seed",
    "min_search_steps",
    "beta_warmup_steps",
    "weight_decay",
    "dropout",
    "xi",
    "max_generate",
    "decoding.no_repeat_ngram_size",
    "decoding.length_penalty",
}
# -1: generate for every eval input; a negative length penalty favours longer texts.
MINUS_ONE_VALID = {"max_generate", "decoding.length_penalty"}
# Real-valued options with no upper bound that makes sense: learning rates, scales, lengths in epochs.
HUGE_VALID = {
    "lora_alpha",
    "fd_r",
    "lr_w",
    "lr_beta",
    "lr_retrain",
    "xi",
    "weight_decay",
    "search_epochs",
    "retrain_epochs",
    "decoding.length_penalty",
}
EXCLUDED = {"0": ZERO_VALID, "-1": MINUS_ONE_VALID, "1e30": HUGE_VALID}


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _fields() -> dict[str, dataclasses.Field]:
    """Every option by its dest: "lr_beta", "data.max_length", "decoding.num_beams"."""
    fields = {f.name: f for f in dataclasses.fields(PipelineConfig) if f.name not in NESTED}
    for group, cls in NESTED.items():
        fields |= {f"{group}.{f.name}": f for f in dataclasses.fields(cls)}
    return fields


def _options() -> dict[str, tuple[str, dataclasses.Field]]:
    """dest -> (its flag, its field), for every option flag of `autolora run`."""
    fields = _fields()
    found = {}
    for action in _run_parser()._actions:
        if action.dest in fields:
            found[action.dest] = (action.option_strings[0], fields[action.dest])
    return found


def _kind(f: dataclasses.Field) -> str:
    return str(f.type).replace(" | None", "")


def _cases() -> list:
    """(dest, flag, value) for every bad command-line value of every option the config checks."""
    cases = []
    for dest, (flag, f) in sorted(_options().items()):
        kind = _kind(f)
        if f.metadata.get("choices"):
            cases.append(pytest.param(dest, flag, "bogus", id=f"{dest}=bogus"))
        elif kind in ("int", "float"):
            for value in NUMBERS:
                if dest not in EXCLUDED.get(value, ()):
                    cases.append(pytest.param(dest, flag, value, id=f"{dest}={value}"))
        elif dest in TEXT_BAD:
            cases += [pytest.param(dest, flag, v, id=f"{dest}={v}") for v in TEXT_BAD[dest]]
    return cases


def _bool_cases() -> list:
    return [
        pytest.param(dest, value, id=f"{dest}:{value}")
        for dest, (_, f) in sorted(_options().items())
        if _kind(f) == "bool"
        for value in ("maybe", "2")
    ]


def _tree_hash(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder holding a previous run's files (fixed bytes), and their hashes."""
    out = tmp_path_factory.mktemp("previous") / "out"
    (out / "adapter").mkdir(parents=True)
    for name, body in (
        ("config.json", b'{"k": 8}'),
        ("metrics.json", b'{"eval": {"mcc": 0.5}}'),
        ("ranks.json", b'{"ranks": {"q": 2}}'),
        ("adapter/adapter_model.safetensors", bytes(range(256))),
    ):
        (out / name).write_bytes(body)
    return out, _tree_hash(out)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("files")
    (tmp / "not_json.txt").write_text("stage: 3\n")
    return tmp


def _spellings(value: str) -> set[str]:
    """How a message may quote the value: as given, or as Python prints the number (1e30: 1e+30)."""
    try:
        return {value, repr(float(value))}
    except ValueError:
        return {value}


def _refused(argv: list[str], name: str, flag: str, value: str, previous_run, capsys) -> None:
    """Runs `autolora run argv` into the previous run's folder and checks how it is refused: status 2,
    the option named (`argument --k` by argparse, `k: ` or `data.max_length: ` by the config) with
    the value, no traceback, the folder's files unchanged."""
    out, before = previous_run
    try:
        code = main(["run", *argv, "--output-dir", str(out)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    named = f"argument {flag}" in err or re.search(rf"(error: |\.){re.escape(name)}: ", err)
    assert named, (argv, err)
    assert any(v in err for v in _spellings(value)), (argv, err)
    assert "Traceback" not in err, err
    assert _tree_hash(out) == before, argv


@pytest.mark.parametrize("dest, flag, value", _cases())
def test_bad_flag_value_is_refused(dest, flag, value, previous_run, files, capsys):
    value = value.format(tmp=files)
    _refused([f"{flag}={value}"], dest.rpartition(".")[2], flag, value, previous_run, capsys)


@pytest.mark.parametrize("dest, value", _bool_cases())
def test_non_boolean_in_a_config_file_is_refused(dest, value, previous_run, tmp_path, capsys):
    group, dot, name = dest.rpartition(".")
    text = f"{group}:\n  {name}: {value}\n" if dot else f"{name}: {value}\n"
    (tmp_path / "c.yaml").write_text(text)
    flag = "--" + name.replace("_", "-")
    _refused(["--config", str(tmp_path / "c.yaml")], name, flag, value, previous_run, capsys)


# The same bad values in a YAML file, for options of each kind and section (YAML spells NaN and inf
# .nan and .inf; 1.0e+30 is a float in YAML, 1e30 a string).
CONFIG_OPTIONS = [
    "lr_beta",
    "k",
    "dropout",
    "rank_budget",
    "dist_timeout",
    "data.max_length",
    "decoding.num_beams",
]
YAML_NUMBERS = {"0": "0", "-1": "-1", "nan": ".nan", "inf": ".inf", "1e30": "1.0e+30", "abc": "abc"}


@pytest.mark.parametrize(
    "dest, value",
    [
        pytest.param(dest, value, id=f"{dest}:{value}")
        for dest in CONFIG_OPTIONS
        for value in NUMBERS
        if dest not in EXCLUDED.get(value, ())
    ],
)
def test_bad_value_in_a_config_file_is_refused(dest, value, previous_run, tmp_path, capsys):
    group, dot, name = dest.rpartition(".")
    text = f"{name}: {YAML_NUMBERS[value]}\n"
    (tmp_path / "c.yaml").write_text(f"{group}:\n  {text}" if dot else text)
    flag = "--" + name.replace("_", "-")
    _refused(["--config", str(tmp_path / "c.yaml")], name, flag, value, previous_run, capsys)


def test_every_option_is_swept_or_named_free_text():
    options = _options()
    assert set(FREE_TEXT) <= set(options), set(FREE_TEXT) - set(options)  # no stale names
    assert set(TEXT_BAD) <= set(options) and not set(TEXT_BAD) & set(FREE_TEXT)
    for name in set().union(*EXCLUDED.values()):
        assert _kind(options[name][1]) in ("int", "float"), name
    swept = {case.values[0] for case in _cases()} | {case.values[0] for case in _bool_cases()}
    assert set(options) - swept == set(FREE_TEXT), set(options) - swept - set(FREE_TEXT)
    for dest in FREE_TEXT:
        kind = _kind(options[dest][1])
        assert kind in ("str", "list[str]") and not options[dest][1].metadata.get("choices"), dest


@pytest.mark.parametrize(
    "dest, value", [(dest, value) for value, names in EXCLUDED.items() for dest in sorted(names)]
)
def test_excluded_values_are_valid(dest, value):
    """The rules above leave out only values the config accepts: no check here could not fail."""
    number = float(value) if _kind(_fields()[dest]) == "float" else int(float(value))
    assert math.isfinite(number)
    config = load_config(overrides={dest: number})
    group, dot, name = dest.rpartition(".")
    assert getattr(getattr(config, group) if dot else config, name) == number
