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
