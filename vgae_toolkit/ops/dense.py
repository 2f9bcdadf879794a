"""The weighted BCE over all N^2 node pairs of an inner-product decoder, without an N x N matrix.

- :func:`softplus_gram_sum`: sum_ij softplus(z_i·z_j) in blocks of rows, with a written-out backward pass.
- :func:`weighted_gram_bce_sum`: sum_ij of p y_ij softplus(-l_ij) + (1 - y_ij) softplus(l_ij) for labels
  y = A (+ I): the sum above, corrected on the labelled pairs.

Both are tested against autograd through ``softplus(z @ z.t())`` and the dense weighted BCE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vgae_toolkit.ops.pairs import cached_plan, share_of


class _SoftplusGramSum(torch.autograd.Function):
    """sum_ij softplus(z_i . z_j) over all N^2 pairs in blocks of rows, without an N x N matrix.

    The Gram matrix is symmetric, so only the blocks on and above the diagonal are formed (half
    the exp/log work), and the backward pass recomputes them instead of saving N^2 logits:
    d/dZ = 2 sigma(Z Z^T) Z. Memory is O(block x N). Process ``rank`` of ``world_size`` takes every
    ``world_size``-th block of rows (the later, shorter rows spread the work evenly); the parts add
    up to the whole sum.
    """

    @staticmethod
    def forward(ctx, z: Tensor, block: int, rank: int, world_size: int) -> Tensor:
        ctx.save_for_backward(z)
        ctx.block, ctx.rank, ctx.world_size = block, rank, world_size
        n, total = z.size(0), z.new_zeros(())
        for a in range(rank * block, n, world_size * block):
            za = z[a:a + block]
            total += F.softplus(za @ za.t()).sum()  # diagonal block: each pair once
            if a + block < n:
                total += 2 * F.softplus(za @ z[a + block:].t()).sum()  # (i, j) and (j, i)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (z,) = ctx.saved_tensors
        block, n = ctx.block, z.size(0)
        out = torch.zeros_like(z)
        for a in range(ctx.rank * block, n, ctx.world_size * block):
            za = z[a:a + block]
            out[a:a + block] += torch.sigmoid(za @ za.t()) @ za
            if a + block < n:
                rest = z[a + block:]
                sig = torch.sigmoid(za @ rest.t())
                out[a:a + block] += sig @ rest
                out[a + block:] += sig.t() @ za
        return out * (2 * grad), None, None, None


def softplus_gram_sum(z: Tensor, block: int = 256, part: tuple[int, int] = (0, 1)) -> Tensor:
    """``F.softplus(z @ z.t()).sum()`` with O(block x N) memory (see :class:`_SoftplusGramSum`);
    ``part=(rank, world_size)`` sums that process's blocks of rows only."""
    return _SoftplusGramSum.apply(z, block, *part)


def weighted_gram_bce_sum(z: Tensor, pos: Tensor, pos_weight: float, part: tuple[int, int] = (0, 1),
                          cache: dict | None = None, self_loops: bool = True) -> Tensor:
    """sum over all N^2 pairs of ``pos_weight * y * softplus(-l) + (1 - y) * softplus(l)``, l = z_i·z_j.

    The labels y are 1 on the edges ``pos`` (both orientations) and, with ``self_loops``, on the
    diagonal; 0 elsewhere. Summing softplus(l) over all pairs and correcting on the labelled ones
    avoids an N x N label matrix:
    p*y*softplus(-l) + (1-y)*softplus(l) = softplus(l) + y*(p*softplus(-l) - softplus(l)).

    Args:
        z (Tensor): node embeddings ``[N, latent]``.
        pos (Tensor): edges ``[2, E]``, one orientation each.
        pos_weight (float): weight p of the labelled pairs.
        part (tuple): ``(rank, world_size)``: this process's share of the terms only (the shares add up).
        cache (dict, optional): where the labelled pairs' :class:`~vgae_toolkit.ops.pairs.PairPlan` is kept.
        self_loops (bool): label the diagonal too.
    """
    n = z.size(0)
    total = softplus_gram_sum(z, part=part)
    diag = torch.arange(n if self_loops else 0, device=z.device)
    labelled = lambda: share_of(torch.cat([pos, pos.flip(0), torch.stack([diag, diag])], dim=1), part)  # noqa: E731
    logits = cached_plan({} if cache is None else cache, ("dense", part, self_loops), pos, labelled, n).logits(z)
    return total + (pos_weight * F.softplus(-logits) - F.softplus(logits)).sum()
