"""What an install holds: the extras (pyproject.toml and autolora.extras agree; a missing one is named
with its pip command), the core working with no extra importable, and the wheel's contents."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autolora import extras

ROOT = Path(__file__).resolve().parents[1]
# Every distribution the extras add, as imported; blocked below to play an install of the core alone.
OPTIONAL = sorted({module for extra in extras.PACKAGES for module, _ in extras.packages(extra)})


def _pyproject_extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _split(requirements: list[str]) -> tuple[set[str], set[str]]:
    """(distribution names, extras of autolora itself) of pyproject requirement strings."""
    dists, includes = set(), set()
    for req in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        if name == "autolora":
            includes |= {e.strip() for e in req[req.index("[") + 1 : req.index("]")].split(",")}
        else:
            dists.add(name)
    return dists, includes


@pytest.mark.parametrize("extra", sorted(extras.PACKAGES))
def test_extras_table_matches_pyproject(extra):
    declared = _pyproject_extras()
    assert extra in declared, f"pyproject.toml has no {extra!r} extra"
    dists, includes = _split(declared[extra])
    assert dists == {dist for _, dist in extras.PACKAGES[extra]}
    assert includes == set(extras.INCLUDES.get(extra, ()))


def test_all_installs_every_feature_extra():
    """autolora[all]: every extra but the demo's model, the test tools and the docs tools."""
    all_dists = {dist for _, dist in extras.packages("all")}
    for extra in set(extras.PACKAGES) - {"all", "demo", "test", "docs"}:
        assert {dist for _, dist in extras.packages(extra)} <= all_dists, extra


def test_missing_extra_names_the_pip_command(monkeypatch):
    from autolora.io.peft_export import export_peft

    monkeypatch.setitem(sys.modules, "peft", None)  # find_spec and import both see it as absent
    assert extras.missing("peft") == ["peft"]
    assert "peft" in extras.missing("cli") and "peft" in extras.missing("trainer")
    with pytest.raises(ImportError, match=re.escape('export_peft needs peft: pip install "autolora[peft]"')):
        export_peft(None, "unused")
    with pytest.raises(ValueError, match="not part of the 'peft' extra"):
        extras.missing("peft", "numpy")


def test_cli_run_without_its_extra_stops_before_anything(monkeypatch, capsys, tmp_path):
    from autolora.cli import main

    monkeypatch.setitem(sys.modules, "datasets", None)
    assert main(["run", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "autolora run needs datasets" in err and 'pip install "autolora[cli]"' in err
    assert not (tmp_path / "out").exists()


_CORE_ONLY = """
import json, sys, tempfile
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed: import raises ImportError, find_spec says None
import torch
from torch import nn
import autolora
from autolora import FusedAutoLoraLinear, inject, load_adapter, save_adapter

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.value = nn.Linear(8, 8), nn.Linear(8, 8)
    def forward(self, x):
        return self.value(torch.relu(self.query(x)))

torch.manual_seed(0)
model = Tiny()
names = inject(model, ["query", "value"], rank=4)
model(torch.randn(3, 8)).sum().backward()
layer = FusedAutoLoraLinear(nn.Linear(8, 5), rank=2)
layer(torch.randn(2, 8))
with tempfile.TemporaryDirectory() as d:
    save_adapter(model, d)
    fresh = Tiny()
    fresh.load_state_dict(model.state_dict(), strict=False)
    load_adapter(fresh, d)
errors = {{}}
for what, code in [("pipeline", "import autolora.pipeline"),
                   ("trainer", "from autolora.integrations.trainer import AutoLoraTrainer")]:
    try:
        exec(code)
    except ImportError as err:
        errors[what] = str(err)
from autolora.doctor import describe, format_description
report = format_description(describe())
print(json.dumps({{"names": names, "errors": errors, "report": report}}))
"""


@pytest.mark.slow
def test_core_works_with_no_extra_importable():
    """The layer, inject and the adapter files with every optional package blocked; what needs an
    extra says which, and the doctor report lists each extra as missing."""
    code = _CORE_ONLY.format(blocked=OPTIONAL)
    env = {**os.environ, "AUTOLORA_DISABLE_EXT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["names"] == ["query", "value"]
    assert out["errors"]["pipeline"].startswith("autolora.data (reading, tokenizing and splitting")
    assert out["errors"]["pipeline"].endswith('needs datasets, scikit-learn: pip install "autolora[cli]"')
    assert out["errors"]["trainer"].startswith("AutoLoraTrainer needs accelerate, datasets")
    assert out["errors"]["trainer"].endswith('pip install "autolora[trainer]"')
    assert 'extra plots:    missing matplotlib (pip install "autolora[plots]")' in out["report"]
    assert "extra cli:      missing datasets, scipy, scikit-learn" in out["report"]


RESEARCH = ("benchmarks/", "experiments/", "tests/", "docs/", "results/", "configs/")


@pytest.mark.slow
def test_wheel_holds_csrc_and_no_research_data(tmp_path):
    """`pip wheel` of a copy of the checkout (build/ and egg-info land in the copy): the sources the
    first-use build compiles are inside, the studies and their results are not."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "runs", "*.so")
    shutil.copytree(ROOT, src, ignore=skip)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "AUTOLORA_BUILD_EXT": "0"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("autolora-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("csrc/lookahead.cpp", "csrc/lookahead.h", "csrc/cuda/lookahead_cuda.cu"):
        assert f"autolora_kernels/{path}" in names, path
    assert "autolora_kernels/_ext.py" in names and "autolora_kernels/fused_linear_kernels.py" in names
    assert not [n for n in names if n.startswith(RESEARCH) or "/results/" in n], names
    # Besides code, only the demo's bundled data and the extension's sources.
    other = [n for n in names if not n.endswith(".py") and ".dist-info/" not in n]
    assert all(n.startswith(("autolora/bundled/", "autolora_kernels/csrc/")) for n in other), other
