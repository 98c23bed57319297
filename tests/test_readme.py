"""README.md is a product page whose every snippet and command runs as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from autolora.cli import build_parser, main
from autolora.config import load_config
from autolora.extras import PACKAGES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands(prefix: str) -> list[str]:
    """The command lines of the bash blocks that start with `prefix`, comments cut."""
    lines = [line.split("  #")[0].strip() for block in blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def test_readme_is_a_product_page():
    lines = README.splitlines()
    assert len(lines) <= 200, len(lines)
    first = "\n".join(lines[:80])
    assert "pip install" in first and "FusedAutoLoraLinear(" in first
    assert not re.search(r"[Ii]ssue [0-9]+", README)
    for link in re.findall(r"\]\(((?!https?:)[^)#]+)", README):  # every relative link resolves
        assert (ROOT / link).exists(), link


def test_readme_install_lines_name_extras_that_exist():
    extras = set(PACKAGES)  # pyproject.toml's extras (test_packaging checks that the two agree)
    named = [re.search(r'"\.\[([a-z,]+)\]"', c) for c in commands("pip install -e")]
    assert named and all(m is None or set(m.group(1).split(",")) <= set(extras) for m in named)
    for word in re.findall(r"\[([a-z]+)\]", README.split("## The two commands")[0]):
        if word not in ("cli", "trainer", "triton", "all"):
            assert word in extras, word


def test_readme_scripts_exist_and_run_commands_parse():
    for line in commands("bash "):
        assert (ROOT / shlex.split(line)[1]).is_file(), line
    runs = commands("autolora run")
    assert len(runs) >= 2
    for line in runs:
        argv = shlex.split(line.split(">")[0])[1:]
        args = build_parser().parse_args(argv)
        assert args.command == "run"
        if args.config:  # a config file of the repository: it loads and validates as it is
            load_config(ROOT / args.config)


@pytest.mark.slow
def test_readme_dry_run_command_prints_a_config(capsys, monkeypatch):
    line = next(c for c in commands("autolora run") if "--dry-run" in c)
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(line.split(">")[0])[1:]) == 0
    config = capsys.readouterr().out
    load_config(None, {})  # the defaults load too
    path = ROOT / "run.json"
    assert not path.exists()  # the redirect is the shell's: nothing was written by the run
    assert config.lstrip().startswith("{") and '"output_dir"' in config


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_snippets_run_as_written(index, tmp_path):
    """Each ```python block runs in a fresh interpreter, in a folder where the README's relative paths
    (examples/...) resolve and its outputs (out/) land in a temporary directory."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = tmp_path / "snippet.py"
    script.write_text(blocks("python")[index])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
