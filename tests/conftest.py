"""Fixtures and hooks only; what tests import lives in helpers.py."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import minilm_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tok():
    return minilm_tokenizer()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Two busy cores: one torch thread per test process is faster than two fighting (modules that
    want it: pytestmark = pytest.mark.usefixtures("one_thread"))."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
