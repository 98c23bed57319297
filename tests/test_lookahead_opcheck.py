"""torch.library.opcheck of the lookahead extension's ops: schema, fake (meta) implementations,
and the dispatcher's view of which arguments each op mutates."""

from __future__ import annotations

import shutil

import pytest
import torch

from autolora_kernels import lookahead as la

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None, reason="no compiler to build csrc/"
)
# The ops take no gradients (they are optimiser steps): autograd registration is not theirs to check.
UTILS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")


def _lists(n: int = 3, seed: int = 0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 3), (5,), (2, 4)][:n]
    return [[torch.randn(s, generator=g) for s in shapes] for _ in range(5)]


@pytest.fixture(scope="module", autouse=True)
def _ext_loaded():
    if not la.build():
        pytest.skip("the lookahead extension did not build")


def _cases():
    p, b, g, m, v = _lists()
    v2 = [x.abs() for x in v]
    eps = torch.tensor(0.01)
    adam = (3, 1e-3, 0.9, 0.999, 1e-8, 0.01)
    return {
        "backup": (p,),
        "backup_into_": (b, p),
        "restore_": (p, b),
        "sgd_step_": (p, g, 0.1),
        "backup_and_sgd_step_": (p, b, g, 0.1),
        "adam_step_": (p, g, m, v2, *adam),
        "backup_and_adam_step_": (p, b, g, m, v2, *adam),
        "global_norm": (g,),
        "fd_eps": (g, 0.01),
        "set_perturbed_": (p, b, g, eps, 1.0),
    }


@pytest.mark.parametrize("name", sorted(la._FAKES))
def test_opcheck(name):
    args = _cases()[name]
    torch.library.opcheck(getattr(torch.ops.autolora, name).default, args, test_utils=UTILS)


def test_every_op_has_a_fake_and_a_case():
    assert set(la._FAKES) == set(_cases())
