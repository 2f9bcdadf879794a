"""Inner-product logits z_i·z_j of node pairs and their gradients, without an N x N tensor.

- :func:`inner_product`: the logits of given pairs, in chunks.
- :class:`PairPlan`: for pairs fixed over epochs (the training edges), the gradient of their logits
  as one CSR product instead of a scatter; :func:`cached_plan` builds it once per batch cache.
- :func:`sampled_bce`: the sampled reconstruction loss (edges and negatives) as one autograd node.

Each is tested against autograd through ``index_select`` and ``softplus`` on small graphs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vgae_toolkit.distributed import share
from vgae_toolkit.ops.sparse import csr_matmul

PAIR_CHUNK = 32768  # pairs per chunk: two gathered [chunk, latent] blocks stay in cache
KEEP_ROWS_MAX = 65536  # negatives up to which the sampled loss keeps their gathered rows for the backward pass


def share_of(pairs: Tensor, part: tuple[int, int]) -> Tensor:
    """The columns of ``pairs`` ``[2, P]`` that process ``part = (rank, world_size)`` scores."""
    rank, world_size = part
    return pairs if world_size == 1 else pairs[:, share(pairs.size(1), rank, world_size)]


def inner_product(z: Tensor, pairs: Tensor) -> Tensor:
    """Decoder logits z_i·z_j for the given pairs only: ``[P]`` (no N x N tensor).

    Up to ``PAIR_CHUNK`` pairs at a time: on a large graph the gathered rows of all pairs would not
    fit in cache, and streaming them through memory makes the gather slower per pair.
    """
    if pairs.size(1) <= PAIR_CHUNK:  # the first gather takes the product in place
        return z.index_select(0, pairs[0]).mul_(z.index_select(0, pairs[1])).sum(dim=-1)
    return torch.cat([inner_product(z, pairs[:, a:a + PAIR_CHUNK]) for a in range(0, pairs.size(1), PAIR_CHUNK)])


def scatter_pair_grads(out: Tensor, z: Tensor, pairs: Tensor, grad: Tensor,
                       rows: tuple[Tensor, Tensor] | tuple[()] = (), crow: Tensor | None = None) -> Tensor:
    """``out`` += d/dZ of sum_p grad_p z_i·z_j (rows i get grad_p z_j, rows j get grad_p z_i), in chunks.

    ``rows``: ``(z[i], z[j])`` for all pairs if the caller kept them from the forward pass (else gathered here).
    ``crow``: CSR row pointers of the pairs' first nodes when ``pairs`` are ordered by them; rows i then
    get their part as one sparse product (a gather and a sum per row, no scatter).
    """
    if crow is not None:
        out.add_(csr_matmul(crow, pairs[1], grad, z))
    for a in range(0, pairs.size(1), PAIR_CHUNK):
        i, j, g = pairs[0, a:a + PAIR_CHUNK], pairs[1, a:a + PAIR_CHUNK], grad[a:a + PAIR_CHUNK].unsqueeze(1)
        if crow is None:  # kept rows are multiplied into a new tensor, gathered ones in place
            out.index_add_(0, i, rows[1][a:a + PAIR_CHUNK] * g if rows else z.index_select(0, j).mul_(g))
        out.index_add_(0, j, rows[0][a:a + PAIR_CHUNK] * g if rows else z.index_select(0, i).mul_(g))
    return out


@dataclass(frozen=True)
class PairPlan:
    """The gradient of pair logits as one sparse product, for pairs that stay fixed over epochs.

    With g_p the gradient of logit p = z_i·z_j, dL/dZ = S Z for the N x N matrix S holding g_p at
    (i, j) and at (j, i). Autograd through ``index_select`` scatters the rows instead
    (``index_add``, one random write per pair and side); ordering S's entries by row once turns
    every epoch's backward pass into a gather of g and one CSR product.

    Attributes:
        pairs: the pairs ``[2, P]``.
        crow, col: CSR structure of S (``2P`` entries, rows ascending).
        src: for each entry of S, the pair whose gradient it holds.
    """

    pairs: Tensor
    crow: Tensor
    col: Tensor
    src: Tensor

    @classmethod
    def build(cls, pairs: Tensor, num_nodes: int) -> PairPlan:
        rows, cols = torch.cat([pairs[0], pairs[1]]), torch.cat([pairs[1], pairs[0]])
        order = torch.argsort(rows * num_nodes + cols)
        crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=pairs.device)
        crow[1:] = torch.bincount(rows, minlength=num_nodes).cumsum(0)
        return cls(pairs, crow, cols[order], order % pairs.size(1))

    def logits(self, z: Tensor) -> Tensor:
        """``inner_product(z, self.pairs)`` with the planned backward pass."""
        return _PlannedPairLogits.apply(z, self)


class _PlannedPairLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, plan: PairPlan) -> Tensor:
        ctx.save_for_backward(z)
        ctx.plan = plan
        return inner_product(z, plan.pairs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        plan = ctx.plan
        return csr_matmul(plan.crow, plan.col, grad.index_select(0, plan.src), z), None


def sorted_pairs(pairs: Tensor, num_nodes: int) -> Tensor:
    """``pairs`` ordered by first, then second node: for a loss that only sums over them, the same
    terms, and the rows of Z that the pairs gather are read in order instead of at random (the split
    shuffles the edges), which matters once Z no longer fits in cache."""
    return pairs.index_select(1, torch.argsort(pairs[0] * num_nodes + pairs[1]))


def cached_plan(cache: dict, key: object, source: Tensor, make_pairs, num_nodes: int) -> PairPlan:
    """The :class:`PairPlan` of ``make_pairs()``, pairs that stay fixed while ``source`` (a constant
    tensor of the batch) does: built on first use and kept in ``cache[key]``."""
    entry = cache.get(key)
    if entry is None or entry[0] is not source:
        entry = cache[key] = (source, PairPlan.build(make_pairs(), num_nodes))
    return entry[1]


class _SampledBCE(torch.autograd.Function):
    """w_pos sum_edges softplus(-z_i·z_j) + w_neg sum_negatives softplus(z_i·z_j), one autograd node.

    The edges' gradient goes through their :class:`PairPlan`; the negatives, fresh every epoch, are
    scattered with ``index_add`` (:func:`scatter_pair_grads`; on the first nodes' side one CSR product
    when ``ordered``). Equal to autograd through :func:`inner_product` and ``softplus`` (tested),
    without its dozen nodes per epoch.
    """

    @staticmethod
    def forward(ctx, z: Tensor, plan: PairPlan, neg: Tensor, w_pos: float, w_neg: float, ordered: bool) -> Tensor:
        ctx.crow = None
        if ordered:  # the negatives' first nodes are in order: CSR row pointers for the backward pass
            ctx.crow = torch.zeros(z.size(0) + 1, dtype=neg.dtype, device=neg.device)
            ctx.crow[1:] = torch.bincount(neg[0], minlength=z.size(0)).cumsum(0)
        pos_logits = inner_product(z, plan.pairs)
        if neg.size(1) <= KEEP_ROWS_MAX:  # keep the gathered rows (a few MB at most): the backward pass needs them
            rows = (z.index_select(0, neg[0]), z.index_select(0, neg[1]))
            neg_logits = (rows[0] * rows[1]).sum(dim=-1)
        else:  # on large graphs they would be hundreds of MB: gathered again in the backward pass, in chunks
            rows, neg_logits = (), inner_product(z, neg)
        ctx.save_for_backward(z, pos_logits, neg_logits, neg, *rows)
        ctx.plan, ctx.w_pos, ctx.w_neg = plan, w_pos, w_neg
        return w_pos * F.softplus(-pos_logits).sum() + w_neg * F.softplus(neg_logits).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, pos_logits, neg_logits, neg, *rows = ctx.saved_tensors
        plan = ctx.plan
        g_pos = torch.sigmoid(-pos_logits).mul_(-ctx.w_pos * grad)  # d softplus(-l)/dl = -sigma(-l)
        g_neg = torch.sigmoid(neg_logits).mul_(ctx.w_neg * grad)
        out = csr_matmul(plan.crow, plan.col, g_pos.index_select(0, plan.src), z)
        return scatter_pair_grads(out, z, neg, g_neg, tuple(rows), ctx.crow), None, None, None, None, None


def sampled_bce(z: Tensor, plan: PairPlan, neg: Tensor, w_pos: float, w_neg: float,
                ordered: bool = False) -> Tensor:
    """``w_pos * sum softplus(-l_edges) + w_neg * sum softplus(l_neg)``: the BCE of the planned edges
    (label 1) and the negatives ``neg`` ``[2, Q]`` (label 0), with the backward pass of :class:`_SampledBCE`.

    Args:
        z (Tensor): node embeddings ``[N, latent]``.
        plan (PairPlan): the edges and their gradient plan.
        neg (Tensor): negative pairs ``[2, Q]``.
        w_pos, w_neg (float): weights of the two sums.
        ordered (bool): ``neg`` is ordered by first node (the backward pass then uses a CSR product on that side).
    """
    return _SampledBCE.apply(z, plan, neg, w_pos, w_neg, ordered)
