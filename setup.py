"""Packaging: the public package lives in python/autolora, the kernels in autolora_kernels/."""

from setuptools import setup

setup(
    package_dir={"autolora": "python/autolora", "autolora_kernels": "autolora_kernels"},
    packages=["autolora", "autolora_kernels"],
    package_data={"autolora": ["bundled/README.md", "bundled/cola/*.tsv"]},
)
