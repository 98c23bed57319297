"""The package's shape: light imports stay light, old module paths keep working."""

import subprocess
import sys

import pytest

HEAVY = ("datasets", "autolora.data", "autolora.data.readers", "autolora.pipeline")


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('MODULES', *sorted(sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split("MODULES", 1)[1].split())


@pytest.mark.parametrize(
    "code",
    [
        "import autolora\nfrom autolora import FusedAutoLoraLinear",
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
