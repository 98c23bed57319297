"""The one parser of boolean environment variables (AUTOLORA_*, TRITON_INTERPRET).

Reads them as Triton reads its own: 1, true, yes, on or y, in any case, are true. Imports nothing but
os, so that setup.py can load this file alone.
"""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on", "y")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE
