"""`autolora run --help` documents every option from the config's metadata; `--dry-run` trains and
writes nothing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest
from pipeline_fixtures import save_tiny_bert

from autolora import options
from autolora.cli import GROUPS, _add_fields, build_parser, main
from autolora.config import NESTED, REMOVED, PipelineConfig, load_config, opt


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _field(dest: str) -> dataclasses.Field:
    group, dot, name = dest.partition(".")
    cls = NESTED[group] if dot else PipelineConfig
    return {f.name: f for f in dataclasses.fields(cls)}[name if dot else dest]


def _parse_default(text: str, default: object, action: argparse.Action) -> object:
    """The value a help line's "(default: TEXT)" stands for, read back with the flag's own type."""
    if text == "none":
        return None
    if isinstance(default, bool):
        return {"on": True, "off": False}[text]
    return (action.type or str)(text)


def test_every_run_flag_has_help_with_its_default():
    run = _run_parser()
    removed = [a for a in run._actions if a.dest in REMOVED]  # hidden: they only name their replacement
    assert {a.dest for a in removed} == set(REMOVED) and all(a.help == argparse.SUPPRESS for a in removed)
    actions = [a for a in run._actions if not isinstance(a, argparse._HelpAction) and a.dest not in REMOVED]
    fields = {f.name for f in dataclasses.fields(PipelineConfig) if f.name not in NESTED}
    fields |= {f"{group}.{f.name}" for group, cls in NESTED.items() for f in dataclasses.fields(cls)}
    assert {a.dest for a in actions} == fields | {"config", "dry_run"}
    for action in actions:
        assert action.help and action.help.strip(), action.option_strings
        m = re.search(r"\(default: ([^()]*)\)$", action.help)
        assert m, f"{action.option_strings}: no default in {action.help!r}"
        if action.dest in ("config", "dry_run"):
            assert m.group(1) == {"config": "none", "dry_run": "off"}[action.dest]
            continue
        f = _field(action.dest)
        text, unit = m.group(1), f.metadata["unit"]
        if unit and f.default is not None:
            assert text.endswith(" " + unit), (action.dest, text)
            text = text[: -len(unit) - 1]
        assert _parse_default(text, f.default, action) == f.default, (action.dest, text)


def test_run_flags_are_grouped_and_show_their_choices():
    run = _run_parser()
    titled = {g.title: {a.dest for a in g._group_actions} for g in run._action_groups}
    assert set(GROUPS) <= set(titled)
    assert {"model", "k", "lr_beta", "retrain_init", "dist_timeout", "output_dir", "data.train_file"} <= set(
        titled["model"] | titled["adapters"] | titled["search"] | titled["retraining"]
        | titled["distributed"] | titled["output"] | titled["data"]
    )  # fmt: skip
    assert "xi" in titled["search"] and "data.max_length" in titled["data"]
    by_dest = {a.dest: a for a in run._actions}
    for dest, choices in [
        ("selection", options.SELECTIONS),
        ("hypergradient", options.HYPERGRADIENTS),
        ("fd_scheme", options.FD_SCHEMES),
        ("lookahead", options.LOOKAHEADS),
        ("rank_rule", options.RANK_RULES),
        ("precision", options.PRECISIONS),
        ("retrain_init", options.RETRAIN_INITS),
        ("data.task", options.TASK_TYPES),
    ]:
        assert by_dest[dest].metavar == "{" + ",".join(choices) + "}"


def test_an_undocumented_option_is_named():
    @dataclasses.dataclass
    class Bad:
        documented: int = opt(1, "has help", "model")
        bare: int = 2

    parser = argparse.ArgumentParser()
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    with pytest.raises(ValueError, match=r"Bad\.bare: declare it with autolora\.config\.opt"):
        _add_fields(parser, Bad, groups)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.mark.slow
def test_dry_run_prints_sizes_and_parameters_and_writes_nothing(bert_dir, tmp_path, capsys):
    existing, missing = tmp_path / "existing", tmp_path / "missing" / "out"
    existing.mkdir()
    for out in (existing, missing):
        args = ["run", "--dry-run", "--model", str(bert_dir), "--format", "cola", "--output-dir", str(out)]
        assert main([*args, "--max-train-samples", "30", "--max-eval-samples", "7", "--no-progress"]) == 0
        captured = capsys.readouterr()
        config_file = tmp_path / "resolved.json"
        config_file.write_text(captured.out)  # stdout is the config alone: --config takes it as it is
        resolved = load_config(config_file)
        assert resolved.output_dir == str(out) and resolved.data.max_train_samples == 30
        assert resolved.to_dict() == json.loads(captured.out)
        printed = captured.err
        assert "data: train 30 = D_tr 15 + D_val 15; eval 7 examples" in printed
        assert "labels: 2 (unacceptable, acceptable)" in printed
        # 2 layers x {query, value} adapters of k = 8 on 16 -> 16: U, V and beta, 8 * (16 + 16) + 8;
        # plus the new classifier, 16 * 2 + 2.
        assert f"trainable parameters: {4 * (8 * 32 + 8) + 34:,} of" in printed
    assert list(existing.iterdir()) == [] and not missing.parent.exists()


def test_dry_run_checks_the_output_dir_without_creating_it(bert_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    args = [
        "run",
        "--dry-run",
        "--model",
        str(bert_dir),
        "--format",
        "cola",
        "--output-dir",
        str(blocker / "o"),
    ]
    assert main(args) == 2
    assert "output_dir: cannot create" in capsys.readouterr().err


def test_help_names_each_default_that_is_not_the_papers_with_its_value_and_the_papers():
    """The description's lines cannot drift from the config: each names the flag with its default."""
    from autolora.cli import RUN_DESCRIPTION, format_default

    defaults = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    paper = {
        "rank_rule": "alpha",
        "rank_budget": "none",
        "lr_beta": "0.001",
        "beta_every": "1",
        "fd_scheme": "central",
    }
    for name, papers in paper.items():
        flag = "--" + name.replace("_", "-")
        assert f"{flag} {format_default(defaults[name])} (paper: " in RUN_DESCRIPTION, name
        assert f"{flag} {papers}" in RUN_DESCRIPTION, name  # the way back to the paper's value


def test_debug_shows_the_traceback_instead_of_one_line(tmp_path, capsys):
    args = ["run", "--lr-beta", "nan", "--output-dir", str(tmp_path / "o")]
    assert main(args) == 2
    assert capsys.readouterr().err == "autolora: error: lr_beta: expected a positive finite number, got nan\n"
    with pytest.raises(ValueError, match="lr_beta: expected a positive finite number, got nan"):
        main([*args, "--debug"])
    assert not (tmp_path / "o").exists()


def test_debug_in_a_config_file_shows_the_run_s_traceback(tmp_path, monkeypatch):
    """A config file's `debug: true` counts once the file is read: for errors of the run itself."""
    import autolora.cli

    def fail(config, dry):
        raise FileNotFoundError(2, "No such file or directory", "ranks.json")

    monkeypatch.setattr(autolora.cli, "_run", fail)
    (tmp_path / "c.yaml").write_text("debug: true\n")
    with pytest.raises(FileNotFoundError, match="ranks.json"):
        main(["run", "--config", str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "o")])


def test_interrupt_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    import autolora.cli

    def interrupted(config, dry):
        raise KeyboardInterrupt

    monkeypatch.setattr(autolora.cli, "_run", interrupted)
    assert main(["run", "--output-dir", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err == "autolora: interrupted; continue with the same command and --resume\n"
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--output-dir", str(tmp_path / "o"), "--debug"])


def test_a_user_error_from_the_run_is_one_line(tmp_path, capsys, monkeypatch):
    """OSError and KeyError raised past the config (a folder not writable, a missing key) are the user's
    to fix: one line, exit status 2."""
    import autolora.cli

    for error, says in [
        (PermissionError(13, "Permission denied", str(tmp_path / "o")), "Permission denied"),
        (KeyError("label"), "label"),
    ]:

        def fail(config, dry, error=error):
            raise error

        monkeypatch.setattr(autolora.cli, "_run", fail)
        assert main(["run", "--output-dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("autolora: error: ") and err.count("\n") == 1 and says in err, err


def test_a_removed_option_names_its_replacement(capsys):
    assert main(["run", "--loss-scale", "512", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autolora: error: loss_scale: removed: fp16 runs scale their losses dynamically")
