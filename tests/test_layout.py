"""The package's shape: light imports stay light, old module paths keep working."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

# The extras' packages (and pandas, which datasets imports) are installed in the test environment but
# stay unimported by the layer and inject. triton too: the fused layer imports it on its first CUDA
# call, so on a CPU it is never imported.
HEAVY = (
    *("datasets", "peft", "scipy", "sklearn", "matplotlib", "yaml", "pandas", "accelerate", "triton"),
    *("autolora.data", "autolora.data.readers", "autolora.pipeline", "autolora.integrations.trainer"),
)


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('MODULES', *sorted(sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split("MODULES", 1)[1].split())


@pytest.mark.parametrize(
    "code",
    [
        "import autolora\nfrom autolora import FusedAutoLoraLinear, inject",
        "from autolora.cli import main\nmain(['doctor', '--no-build'])",
    ],
    ids=["import", "doctor"],
)
@pytest.mark.slow
def test_light_entry_points_do_not_import_data(code):
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.slow
def test_old_module_paths_still_import():
    from autolora.config import DataConfig as FromConfig
    from autolora.config import PipelineConfig
    from autolora.data import DataConfig
    from autolora.pipeline import run_pipeline
    from autolora.search import BilevelSearch, SearchStepConfig

    assert DataConfig is FromConfig
    assert callable(run_pipeline) and PipelineConfig and BilevelSearch and SearchStepConfig


def test_public_names():
    import autolora

    for name in autolora.__all__:
        assert getattr(autolora, name) is not None, name


def _module_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (imports inside functions are lazy
    on purpose and do not make a cycle at import time)."""
    files = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


@pytest.mark.parametrize("root, package", [("python", "autolora"), (".", "autolora_kernels")])
def test_no_import_cycle(root, package):
    """Imports run one way: no module reaches itself through module-level imports."""
    graph = _module_imports(Path(__file__).resolve().parents[1] / root, package)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, cycles
