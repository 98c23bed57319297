"""Packaging: the public package lives in python/autolora, the kernels in autolora_kernels/.

The lookahead C++ extension (csrc/) is normally built on first use (autolora_kernels/_ext.py). With
AUTOLORA_BUILD_EXT=1 it is built here instead, as autolora_kernels/_lookahead_C (with the CUDA sources
when _ext.cuda_plan finds a CUDA torch, a visible GPU or TORCH_CUDA_ARCH_LIST, and nvcc); that needs
torch in the build environment: `AUTOLORA_BUILD_EXT=1 pip install -e . --no-build-isolation`. Without the
variable, building imports nothing but setuptools, so an isolated build stays fast and CPU-only.
csrc/ is copied into the package (autolora_kernels/csrc) so that a wheel install can build on first use.
"""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithCsrc(build_py):
    """Also ship csrc/ as autolora_kernels/csrc (editable installs find it at the repository root)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "autolora_kernels" / "csrc"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "csrc", target, ignore=shutil.ignore_patterns("*.o", "build*"))


def _flag(name):
    """autolora_kernels/env.py's parser, loaded alone (the package's __init__ imports torch)."""
    spec = importlib.util.spec_from_file_location("_autolora_env", ROOT / "autolora_kernels" / "env.py")
    env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(env)
    return env.env_flag(name)


def extension_kwargs():
    if not _flag("AUTOLORA_BUILD_EXT"):
        return {}
    import sys

    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sys.path.insert(0, str(ROOT))
    from autolora_kernels import _ext  # the same compiler flags as the first-use build

    sources = ["csrc/lookahead.cpp"]
    args = {"cxx": _ext.cpu_flags()}
    with_cuda, plan = _ext.cuda_plan()
    print(f"autolora: building the lookahead extension: {plan}")
    if with_cuda:
        sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cuda").glob("*.cu"))
        args["nvcc"] = ["-O3", "-lineinfo"]
    make = CUDAExtension if with_cuda else CppExtension
    ext = make("autolora_kernels._lookahead_C", sources, include_dirs=[str(ROOT / "csrc")],
               extra_compile_args=args, extra_link_args=["-fopenmp"])  # fmt: skip
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExtension, "build_py": BuildPyWithCsrc}}


kwargs = {"cmdclass": {"build_py": BuildPyWithCsrc}}
kwargs.update(extension_kwargs())

setup(
    package_dir={"autolora": "python/autolora", "autolora_kernels": "autolora_kernels"},
    packages=[
        "autolora",
        *(
            f"autolora.{sub}"
            for sub in ("data", "eval", "integrations", "io", "nn", "search", "train", "tuner")
        ),
        "autolora_kernels",
    ],
    package_data={"autolora": ["bundled/README.md", "bundled/cola/*.tsv"]},
    **kwargs,
)
