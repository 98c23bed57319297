"""How a searched adapter's rank is read from its state: the rank rules.

Every rule gives each adapter a weight per component, compares it with a threshold tau and counts
the components at or above it (at least one):

- ``alpha`` (the paper): w_j = alpha_j at the last search step, tau = 1/k (1/2 for sigmoid selection).
- ``alpha-avg``: the same weights averaged over the last ``stability_window`` steps, so one noisy
  step near the threshold does not decide.
- ``spectrum``: w_i = sigma_i / sum(sigma), the singular values of the learned update
  Delta = s * U diag(alpha) V, tau = 1/k. The layer computes s * alpha_j * u_j v_j^T, so alpha_j and
  the norms of u_j, v_j trade off freely; the singular values do not depend on how the components
  share the scale, and they count directions of the update rather than components (two components
  that learned the same direction count once).
- ``effective-rank``: the same shares p_i = sigma_i / sum(sigma), read as one number, the effective
  rank exp(-sum_i p_i log p_i) (Roy and Vetterli, 2007): k for a flat spectrum, 1 for a rank-1
  update, 2 for two equal directions. The rank is that number rounded (clamped to 1..k). Unlike a
  count of shares above 1/k it moves smoothly as the tail of the spectrum grows, so a small change in
  one singular value moves it a little instead of flipping a component across the threshold.

Across adapters, ``update_norm`` is the size of each learned update (its Frobenius norm): what
``rank_share`` "norm" shares a total of ranks by (autolora.tuner.ranks.proportional_ranks). The rules
above read the shape of one adapter's spectrum and never its size, so a small update spread over many
directions counts as many ranks; the norm counts how far the update moved the layer.

The weights along the search are what the diagnostics (autolora.search.diagnostics) read.
"""

from __future__ import annotations

import math

import torch

from autolora.options import RANK_RULES, SPECTRAL_RULES


def _thin_svd_core(U, V, alpha, scaling: float):
    """(Q_u, Q_v, C) with Delta = Q_u C Q_v^T, C = R_u R_v^T of size k x k: Delta's singular values
    and vectors come from C's, at O((out + in) k^2) and without forming the (out, in) matrix."""
    qu, ru = torch.linalg.qr(U.double() * (alpha.double() * scaling))
    qv, rv = torch.linalg.qr(V.double().t())
    return qu, qv, ru @ rv.t()


def spectrum(U: torch.Tensor, V: torch.Tensor, alpha: torch.Tensor, scaling: float) -> torch.Tensor:
    """Singular values of Delta = scaling * U diag(alpha) V, largest first, shape (k,).
    U: (out, k), V: (k, in)."""
    return torch.linalg.svdvals(_thin_svd_core(U, V, alpha, scaling)[2])


def update_grams(U: torch.Tensor, V: torch.Tensor, alpha: torch.Tensor, scaling: float):
    """(G_u, G_v) = (A^T A, V V^T) with A = scaling * U diag(alpha), each (k, k) fp64: what
    `spectrum_from_grams` reads Delta = A V's singular values from. Plain matmuls, no torch.linalg
    call, so on a GPU nothing waits for the device (linalg checks its info flags on the host).
    U: (out, k), V: (k, in), alpha: (k,)."""
    a = U.detach().double() * (alpha.detach().double() * scaling)
    v = V.detach().double()
    return a.t() @ a, v @ v.t()


def spectrum_from_grams(gu: torch.Tensor, gv: torch.Tensor) -> torch.Tensor:
    """Singular values of Delta = A V, largest first, from its Grams (`update_grams`): (..., k, k) x 2
    -> (..., k).

    With G_u = Q Lambda Q^T, Delta's squared singular values are the eigenvalues of
    Lambda^(1/2) Q^T G_v Q Lambda^(1/2) (similar to G_u G_v, whose nonzero eigenvalues are
    Delta Delta^T's). Negative rounding is clamped to 0, so U = 0 (LoRA's init) gives 0. A Gram squares
    the spread of the singular values: a singular value sigma_i comes out to about
    1e-16 * (sigma_max / sigma_i)^2 relative (fp64), a zero one to about 1e-8 * sigma_max, against the
    QR path's (`spectrum`) 1e-16 * sigma_max; far below the 5 decimals the search's records keep.
    """
    lam, q = torch.linalg.eigh(gu)
    root = lam.clamp(min=0).sqrt()
    m = root[..., :, None] * (q.mT @ gv @ q) * root[..., None, :]
    return torch.linalg.eigvalsh(m).clamp(min=0).sqrt().flip(-1)


def update_norm(U: torch.Tensor, V: torch.Tensor, alpha: torch.Tensor, scaling: float) -> float:
    """Frobenius norm of Delta = scaling * U diag(alpha) V (the root of its squared singular values)."""
    return float(spectrum(U.detach(), V.detach(), alpha.detach(), scaling).norm())


def spectral_factors(U, V, alpha, scaling: float, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A @ B the best rank-`rank` approximation of Delta, balanced: A = P sqrt(S),
    B = sqrt(S) Q^T for Delta's top singular triplets (P, S, Q). A: (out, rank), B: (rank, in)."""
    qu, qv, core = _thin_svd_core(U, V, alpha, scaling)
    p, s, qt = torch.linalg.svd(core)
    root = s[:rank].sqrt()
    return (qu @ p[:, :rank]) * root, root[:, None] * (qt[:rank] @ qv.t())


def rule_weights(rule: str, U, V, alpha: torch.Tensor, scaling: float) -> torch.Tensor:
    """The per-component weights a rule compares with its threshold, shape (k,), fp64."""
    if rule in ("alpha", "alpha-avg"):
        return alpha.detach().double()
    if rule in SPECTRAL_RULES:
        s = spectrum(U.detach(), V.detach(), alpha.detach(), scaling)
        return s / s.sum().clamp(min=torch.finfo(s.dtype).tiny)
    raise ValueError(f"rank_rule: expected one of {RANK_RULES}, got {rule!r}")


def effective_rank(shares: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of shares summing to one, along the last dimension: (..., k) -> (...)."""
    p = shares.double().clamp(min=0)
    return torch.exp(-torch.special.xlogy(p, p).sum(-1))


def rank_from_weights(rule: str, window: torch.Tensor, tau: float) -> int:
    """The rank a rule reads from its weights along the last steps, window: (T, k), last row = now."""
    if rule == "effective-rank":
        return min(window.shape[-1], max(1, math.floor(float(effective_rank(window[-1])) + 0.5)))
    weights = window.mean(0) if rule == "alpha-avg" else window[-1]
    return max(1, int((weights >= tau).sum()))


def decision_series(rule: str, weights: torch.Tensor, tau: float) -> tuple[torch.Tensor, float]:
    """What a rule compares with a threshold along the search, and that threshold, for the diagnostics:
    the per-component weights and tau, or for effective-rank the effective rank (T, 1) and the
    rounding boundary nearest its last value (r + 1/2 for an effective rank in [r, r + 1))."""
    if rule != "effective-rank":
        return weights, tau
    e = effective_rank(weights)[:, None]
    return e, min(math.floor(float(e[-1, 0])), weights.shape[-1] - 1) + 0.5
