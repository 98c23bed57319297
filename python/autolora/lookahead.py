"""`autolora.lookahead` is the lookahead op of autolora_kernels (kept importable under this name)."""

import sys

from autolora_kernels import lookahead as _lookahead

sys.modules[__name__] = _lookahead
