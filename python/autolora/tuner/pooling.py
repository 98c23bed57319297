"""Mean pooling for a sequence classifier: the head reads the mean of the last hidden states over
the real (unpadded) tokens instead of the model's [CLS] pooler.

Why: sentence-transformers' MiniLM (the embedded model) was trained to be read by mean pooling (its
1_Pooling/config.json); its [CLS] pooler is a leftover. With the pooler frozen, a linear classifier
on [CLS] learns nothing on CoLA, so "adapters + classifier alone" could not be compared on CoLA
(README, the rank search on real data). Mean pooling has no parameters: what is trained stays the
adapters and the classifier.

How: the base model's `pooler` (BERT and its family call it with the hidden states alone) becomes a
MaskedMeanPooler, and a forward pre-hook on the base model hands it the attention mask of each call.
The model's config records it (`autolora_pooling`), and so do the adapter files, so that
`autolora.load_adapter` puts it back; a model loaded by plain transformers or PEFT needs
`mean_pooling(model)` before the adapter is loaded.
"""

from __future__ import annotations

import torch
from torch import nn

CONFIG_KEY = "autolora_pooling"


class MaskedMeanPooler(nn.Module):
    """The mean of hidden_states over the positions where the attention mask is 1."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the base model: keep this call's attention mask (None: every token)."""
        mask = kwargs.get("attention_mask")
        self.mask = args[1] if mask is None and len(args) > 1 else mask

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        self.mask = None  # one call's mask: never read by the next call
        if mask is None:
            return hidden_states.mean(dim=1)
        if mask.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"attention_mask: shape {tuple(mask.shape)}, expected (batch, length) = "
                f"{tuple(hidden_states.shape[:2])} for mean pooling"
            )
        m = mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def mean_pooling(model: nn.Module) -> nn.Module:
    """Make the classifier read the mean of the last hidden states over the real tokens, in place.

    Replaces the base model's pooler by a masked mean over the unpadded tokens, with no parameters,
    as sentence-transformers models such as MiniLM were trained.

    Args:
        model: a transformers sequence classifier whose base model has a `pooler` (BERT's family).

    Returns:
        The same model; a model that has mean pooling already is returned as it is.

    Raises:
        ValueError: the base model has no pooler.
    """
    if pooling_of(model) == "mean":
        return model
    base = getattr(model, "base_model", model)
    if getattr(base, "pooler", None) is None:
        raise ValueError(
            f"pooling: 'mean' needs a model whose base model has a pooler (BERT's family); "
            f"{type(model).__name__} has none: use pooling 'model'"
        )
    pooler = MaskedMeanPooler()
    base.pooler = pooler
    base.register_forward_pre_hook(pooler.capture, with_kwargs=True)
    model.config.update({CONFIG_KEY: "mean"})
    return model


def pooling_of(model: nn.Module) -> str:
    """'mean' when mean_pooling was applied to `model`, else 'model'."""
    base = getattr(model, "base_model", model)
    return "mean" if isinstance(getattr(base, "pooler", None), MaskedMeanPooler) else "model"
