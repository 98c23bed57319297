"""Scoring: evaluation.py runs the model over the eval set, metrics.py turns predictions into scores.

Needs datasets, scikit-learn and scipy (the "cli" extra).
"""

from autolora.extras import MissingExtra, missing

if absent := missing("cli", "datasets", "sklearn", "scipy"):
    raise MissingExtra("cli", "autolora.eval (scores)", absent)

from autolora.eval.evaluation import evaluate, predict_logits
from autolora.eval.metrics import compute_metrics, get_entities

__all__ = ["compute_metrics", "evaluate", "get_entities", "predict_logits"]
