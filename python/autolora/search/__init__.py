"""The bilevel rank search: one iteration updates W on D_tr and beta on D_val (bilevel.py), with
the RNG replayed between passes over one batch (rng.py) and the lookahead's elementwise work done by
the lookahead op (autolora_kernels)."""

from autolora.options import FD_SCHEMES, HYPERGRADIENTS
from autolora.search.bilevel import BilevelSearch, LossFn, SearchStepConfig, model_loss
from autolora.search.rng import RngReplay, rng_state, set_rng_state
from autolora.search.schedule import beta_moves

__all__ = [
    "FD_SCHEMES",
    "HYPERGRADIENTS",
    "BilevelSearch",
    "LossFn",
    "RngReplay",
    "SearchStepConfig",
    "beta_moves",
    "model_loss",
    "rng_state",
    "set_rng_state",
]
