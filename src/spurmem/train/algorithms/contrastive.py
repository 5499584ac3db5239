"""The NT-Xent (SimCLR) loss used by the framework (docs/method.md §6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over the 2B rows of ``[a; b]``.

    Rows are L2-normalised; the positive of row i of ``a`` is row i of ``b`` and vice versa; the other
    2B - 2 rows are negatives; the result is the mean over all 2B rows.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"nt_xent needs two B x D tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positives)
