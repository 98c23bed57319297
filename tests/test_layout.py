"""The package's shape: light imports stay light, old module paths keep working, benchmarks/ holds
the product's benchmarks and experiments/ the studies, which nothing imports."""

import ast
import re
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
ROOT = Path(__file__).resolve().parents[1]
PRODUCT_BENCHMARKS = {
    "bench_fused_linear",
    "bench_lookahead",
    "bench_search_profile",
    "bench_search_throughput",
}


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


def test_benchmarks_hold_only_the_product_benchmarks():
    """benchmarks/: the product's benchmarks, their harness and README, and results each made by one of
    them (named by its command line); studies of the method live in experiments/."""
    bench = ROOT / "benchmarks"
    files = {p.relative_to(bench).as_posix() for p in bench.rglob("*") if p.is_file()}
    files = {f for f in files if "__pycache__" not in f}
    top = {f for f in files if "/" not in f}
    assert top == {"README.md", "_harness.py", "_profile_report.py", *(f"{b}.py" for b in PRODUCT_BENCHMARKS)}
    for name in sorted(files - top):
        assert name.startswith("results/"), name
        made_by = set(re.findall(r"benchmarks/(\w+)\.py", (bench / name).read_text()))
        assert made_by and made_by <= PRODUCT_BENCHMARKS, (name, sorted(made_by))


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_and_benchmarks_never_import_experiments():
    """Imports run one way: experiments/ uses the library and the benchmarks' harness, never the reverse
    (neither as a package nor as a script module put on sys.path)."""
    study_modules = {"experiments"} | {p.stem for p in (ROOT / "experiments").glob("*.py")}
    assert {"analysis", "bench_compare"} <= study_modules  # the scan below looks for real names
    offenders = {}
    for folder in ("python", "autolora_kernels", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            found = _top_level_imports(path) & study_modules
            if found:
                offenders[path.relative_to(ROOT).as_posix()] = sorted(found)
    assert not offenders, offenders
