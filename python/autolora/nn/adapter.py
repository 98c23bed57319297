"""The AutoLoRA adapter itself: k rank-1 components U[:, j] V[j, :] weighted by alpha = softmax(beta).

Modes (docs/METHOD.md section 2):
- search: rank k, beta trainable, scale lora_alpha / k;
- fixed:  rank r, no beta (alpha = 1), scale lora_alpha / r, exactly PEFT's LoRA.
Merging into a base weight is the wrapping layer's business (layer.py, sliced.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from autolora.options import SELECTIONS
from autolora_kernels import lora_delta_reference, selection_weights

MODES = ("search", "fixed")


class AutoLoraAdapter(nn.Module):
    """The k rank-1 components of one LoRA update and their selection weights.

    The update is `Delta = s * U diag(alpha) V` with `alpha = softmax(beta)` in search mode (or
    `sigmoid(beta)`, the paper's ablation) and `alpha = 1` in fixed mode, `s = lora_alpha / rank`.
    U: (out, r) zeros, V: (r, in) kaiming-uniform(a=sqrt(5)), beta: (r,) zeros in search mode, so the
    update starts at 0 and every alpha at 1/k.

    Args:
        in_features: the input width of the adapted projection.
        out_features: its output width.
        rank: k, the components searched over, in search mode; r, the rank, in fixed mode.
        lora_alpha: the scaling numerator: the update is scaled by lora_alpha / rank.
        dropout: probability of dropping an input of the adapter (not of the base layer).
        mode: "search" (beta trainable) or "fixed" (PEFT's LoRA of rank r).
        dtype: of U and V; beta stays fp32 under 16-bit weights.
        device: of U, V and beta.
        selection: how beta becomes alpha: "softmax" (the paper) or "sigmoid".

    Raises:
        ValueError: an argument out of range, named in the message.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 8,
        lora_alpha: float = 16.0,
        dropout: float = 0.0,
        mode: str = "search",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        selection: str = "softmax",
    ) -> None:
        super().__init__()
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank: expected an integer >= 1, got {rank!r}")
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection: expected one of {SELECTIONS}, got {selection!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if lora_alpha <= 0:
            raise ValueError(f"lora_alpha: expected a positive number, got {lora_alpha!r}")
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.lora_alpha, self.mode, self.selection = rank, float(lora_alpha), mode, selection
        self.U = nn.Parameter(torch.zeros(out_features, rank, dtype=dtype, device=device))
        self.V = nn.Parameter(torch.empty(rank, in_features, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.V, a=math.sqrt(5))  # LoRA's A init, as in PEFT and loralib
        if mode == "search":
            # beta stays fp32 under 16-bit weights (Adam on logits needs the range), else follows them
            beta_dtype = torch.float32 if dtype in (None, torch.float16, torch.bfloat16) else dtype
            self.beta = nn.Parameter(torch.zeros(rank, dtype=beta_dtype, device=device))
        else:
            self.register_parameter("beta", None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def scaling(self) -> float:
        """lora_alpha / rank: k in search mode (16 / 8 = 2 by default), r in fixed mode."""
        return self.lora_alpha / self.rank

    def alpha(self) -> torch.Tensor:
        """The selection weights.

        Returns:
            softmax(beta) (or sigmoid(beta)) in at least fp32, shape (rank,); ones in fixed mode.
        """
        if self.beta is not None and self.selection == "sigmoid":
            return torch.sigmoid(self.beta.to(torch.promote_types(self.beta.dtype, torch.float32)))
        return selection_weights(self.beta, self.rank, self.V)

    def threshold(self) -> float:
        """A component is kept when its alpha reaches the value every alpha starts from (beta = 0):
        1/k for softmax (docs/METHOD.md section 6), 1/2 for the sigmoid ablation."""
        return 1.0 / self.rank if self.selection == "softmax" else 0.5

    def selected(self, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean mask of the components kept by rank selection: alpha >= threshold, at least one.
        alpha: this adapter's selection weights if already computed (e.g. on the host)."""
        if self.beta is None:
            return torch.ones(self.rank, dtype=torch.bool, device=self.V.device)
        alpha = self.alpha() if alpha is None else alpha
        keep = alpha >= self.threshold()
        if not keep.any():  # only possible for sigmoid: the softmax maximum is always >= 1/k
            keep[alpha.argmax()] = True
        return keep

    def selected_rank(self, alpha: torch.Tensor | None = None) -> int:
        """The paper's rank: r = #{j : alpha_j >= 1/k} (>= 1/2 for the sigmoid ablation).

        Args:
            alpha: this adapter's selection weights, shape (rank,), if already computed; None
                computes them.

        Returns:
            r, at least 1, since the largest alpha of a softmax is always >= 1/k; the rank in fixed mode.
        """
        return int(self.selected(alpha).sum().item())

    @torch.no_grad()
    def keep_selected_(self, keep: torch.Tensor | None = None) -> int:
        """Become, in place, the fixed-rank adapter of the kept components (warm retraining).

        keep: boolean mask of the components to keep; default: selected() (alpha >= threshold).
        Kept component j contributed s_k * alpha_j * U_j V_j; the fixed adapter scales by s_r =
        lora_alpha / r and has alpha = 1, so U_j is rescaled by s_k * alpha_j / s_r: the kept part of
        the update is reproduced exactly. Returns r.
        """
        self._check_search_mode()
        alpha = self.alpha()
        keep = self.selected() if keep is None else keep.to(device=alpha.device, dtype=torch.bool)
        if keep.shape != alpha.shape or not keep.any():
            raise ValueError(
                f"keep: expected a mask of {self.rank} components with one set, got {keep.tolist()}"
            )
        factor = (alpha[keep] * self.scaling).to(self.U.dtype)  # s_k * alpha_j
        return self.fix_(self.U[:, keep] * factor, self.V[keep])

    @torch.no_grad()
    def fix_(self, A: torch.Tensor, B: torch.Tensor) -> int:
        """Become, in place, the fixed-rank adapter whose update is A @ B (A: (out, r), B: (r, in)).

        U = A / s_r, V = B with s_r = lora_alpha / r. beta is dropped; U and V become new parameters
        of rank r under the same names, so the model is what inject(mode="fixed", ranks=...) builds.
        """
        self._check_search_mode()
        rank = A.shape[1]
        if A.shape != (self.out_features, rank) or B.shape != (rank, self.in_features) or rank < 1:
            raise ValueError(f"A, B: expected ({self.out_features}, r) and (r, {self.in_features}), "
                             f"got {tuple(A.shape)} and {tuple(B.shape)}")  # fmt: skip
        U = (A / (self.lora_alpha / rank)).to(self.U.dtype)
        self.U, self.V = nn.Parameter(U.contiguous()), nn.Parameter(B.to(self.V.dtype).contiguous())
        self.beta = None
        self.rank, self.mode = rank, "fixed"
        return rank

    def _check_search_mode(self) -> None:
        if self.beta is None:
            raise ValueError(f"mode: only a search-mode adapter selects components, this one is {self.mode}")

    def op_args(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(U, beta) for the fused op, which applies softmax(beta): the sigmoid ablation folds its
        alpha into U instead (an N x k multiply) and passes no beta."""
        if self.beta is not None and self.selection == "sigmoid":
            return self.U * self.alpha().to(self.U.dtype), None
        return self.U, self.beta

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's output s * ((drop(x) V^T) * alpha) U^T, shape (..., out)."""
        U, beta = self.op_args()
        return lora_delta_reference(self.dropout(x), U, self.V, beta, self.scaling)

    @torch.no_grad()
    def delta_weight(self) -> torch.Tensor:
        """The learned update as a matrix.

        Returns:
            Delta = s * U diag(alpha) V, shape (out, in), in fp32, without gradient.
        """
        scale = self.alpha().to(self.U.device) * self.scaling
        return (self.U.float() * scale) @ self.V.float()

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, rank={self.rank}, "
            f"lora_alpha={self.lora_alpha:g}, mode={self.mode}, selection={self.selection}"
        )
