"""Scoring: evaluation.py runs the model over the eval set, metrics.py turns predictions into scores."""

from autolora.eval.evaluation import evaluate, predict_logits
from autolora.eval.metrics import compute_metrics, get_entities

__all__ = ["compute_metrics", "evaluate", "get_entities", "predict_logits"]
