"""The docs site: it builds with warnings as errors, and what the API pages render has Google-style
docstrings that name every argument and say what is returned."""

import functools
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

griffe = pytest.importorskip("griffe", reason="the docs extra: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
# Their fields are documented by the metadata `autolora run --help` prints (autolora.config.opt),
# which docs/cli.md renders in full; an Args section would repeat fifty lines of it.
FIELDS_IN_HELP = {
    "autolora.config.PipelineConfig",
    "autolora.config.DataConfig",
    "autolora.integrations.arguments.AutoLoraArguments",  # SearchOptions' fields, and three of its own
    *(f"autolora.run_options.{name}Options" for name in ("Model", "Adapter", "Train", "Retrain")),
    *(f"autolora.run_options.{name}Options" for name in ("Runtime", "Evaluation", "Output")),
    "autolora.search_options.SearchOptions",
}
SKIPPED_PARAMS = {"self", "cls"}


def directives() -> list[tuple[str, dict]]:
    """Every `::: identifier` on the API pages with its options (the indented YAML block below it)."""
    found = []
    for page in API_PAGES:
        text = page.read_text()
        for m in re.finditer(r"^::: (\S+)\n((?:    .*\n|\n)*)", text, re.M):
            options = yaml.safe_load(textwrap.dedent(m.group(2))) or {}
            found.append((m.group(1), options.get("options", {})))
    return found


@functools.cache
def package(name: str):
    return griffe.load(name, search_paths=[str(ROOT / "python"), str(ROOT)], docstring_parser="google")


def load(identifier: str):
    name, path = identifier.split(".", 1)
    obj = package(name)[path]
    return obj.final_target if obj.is_alias else obj


def sections(obj, kind: str) -> list:
    """The items of every `kind` section of obj's parsed docstring ([] when it has none)."""
    return [item for s in obj.docstring.parsed if s.kind.value == kind for item in s.value]


def problems_of_function(func, path: str) -> list[str]:
    if not func.docstring:
        return [f"{path}: no docstring"]
    found = []
    params = [p.name for p in func.parameters if p.name not in SKIPPED_PARAMS]
    documented = {p.name.lstrip("*") for p in sections(func, "parameters")}
    missing = [p for p in params if p not in documented]
    if missing:
        found.append(f"{path}: Args does not name {missing}")
    returns = str(func.returns) if func.returns is not None else "None"
    if returns != "None" and not func.has_labels("property") and not sections(func, "returns"):
        found.append(f"{path}: returns {returns} but has no Returns section")
    return found


def problems_of(identifier: str, options: dict) -> list[str]:
    obj = load(identifier)
    if obj.is_function:
        return problems_of_function(obj, identifier)
    if not obj.docstring:
        return [f"{identifier}: no docstring"]
    found = []
    init = obj.members.get("__init__")
    if init is not None and identifier not in FIELDS_IN_HELP:
        params = [p.name for p in init.parameters if p.name not in SKIPPED_PARAMS]
        documented = {p.name.lstrip("*") for p in sections(obj, "parameters") + sections(obj, "attributes")}
        missing = [p for p in params if p not in documented]
        if missing:
            found.append(f"{identifier}: Args (or Attributes) does not name {missing}")
    wanted = options.get("members")  # a list of names, false for none, absent for every public one
    for name, member in obj.members.items():
        rendered = name in (wanted or ()) if wanted is not None else not name.startswith("_")
        if rendered and member.is_function:
            found += problems_of_function(member, f"{identifier}.{name}")
        elif rendered and member.is_attribute and wanted is not None and not member.docstring:
            found.append(f"{identifier}.{name}: no docstring")
    return found


def test_api_pages_render_documented_objects(caplog):
    assert len(directives()) >= 30, "the API pages lost their directives"
    problems = []
    with caplog.at_level(logging.WARNING, logger="griffe"):
        for identifier, options in directives():
            problems += problems_of(identifier, options)
    problems += [f"griffe: {r.getMessage()}" for r in caplog.records]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    """`mkdocs build --strict` (the Makefile's `docs`) fails on any warning: a broken link or anchor,
    an API page naming an object that is gone, a malformed docstring section."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "autolora" / "index.html").is_file()
