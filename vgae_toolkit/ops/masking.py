"""Masking of a graph's edges, as masked graph auto-encoders train (Li et al., *MaskGAE*, KDD 2023,
https://arxiv.org/abs/2205.10053).

Each function splits the directed edges ``[2, 2E]`` of an undirected graph (both orientations present)
into the masked edges, which the model must reconstruct, and the visible graph the encoder sees. As
in MaskGAE, the masked edges are directed (an edge may be masked in one orientation only) and the
visible graph is made undirected again: an edge stays visible when either orientation is unmasked.
Random numbers come from torch's global generator (as dropout's do), so a seeded run is repeatable.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import to_undirected

from vgae_toolkit.ops.dropout import keep_mask
from vgae_toolkit.ops.sparse import TransposePlan, block_rows


def mask_edges(edge_index: Tensor, p: float, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Masks each directed edge independently with probability ``p``: ``(visible, masked)``."""
    masked = torch.rand(edge_index.size(1), device=edge_index.device) < p
    return to_undirected(edge_index[:, ~masked], num_nodes=num_nodes), edge_index[:, masked]


def edge_csr(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(row, col, start, degree)``: the edges sorted by first node, where each node's edges start, how many."""
    order = torch.argsort(edge_index[0] * num_nodes + edge_index[1])
    row, col = edge_index[0][order], edge_index[1][order]
    degree = torch.bincount(row, minlength=num_nodes)
    start = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
    start[1:] = degree.cumsum(0)
    return row, col, start, degree


def mask_paths(edge_index: Tensor, p: float, num_nodes: int, walk_length: int = 3,
               walks_per_node: int = 1, start: str = "node",
               csr: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Masks the edges of uniform random walks: ``(visible, masked)``.

    Walks start from ``round(p * N)`` distinct nodes (``start="node"``) or from the first node of
    each directed edge drawn with probability ``p`` (``start="edge"``), each ``walks_per_node``
    times, for ``walk_length`` steps to a uniformly drawn neighbour; every edge a walk crosses is
    masked (MaskGAE's path masking). A walk at a node without neighbours stays there. ``csr``
    (:func:`edge_csr` of ``edge_index``) saves sorting the edges again.
    """
    n, num_edges = num_nodes, edge_index.size(1)
    row, col, first, degree = csr if csr is not None else edge_csr(edge_index, n)
    if start == "edge":
        node = row[torch.rand(num_edges, device=row.device) < p].repeat(walks_per_node)
    else:
        node = torch.randperm(n, device=edge_index.device)[: round(n * p)].repeat(walks_per_node)
    hit = torch.zeros(num_edges, dtype=torch.bool, device=edge_index.device)
    for _ in range(walk_length):
        if num_edges == 0:
            break
        d = degree[node]
        step = first[node] + (torch.rand(node.numel(), device=node.device) * d).long().clamp(max=(d - 1).clamp(min=0))
        moves = d > 0
        step = step.clamp(max=num_edges - 1)
        hit[step[moves]] = True
        node = torch.where(moves, col[step], node)
    kept, masked = (~hit).nonzero().squeeze(1), hit.nonzero().squeeze(1)
    visible = torch.stack([row.index_select(0, kept), col.index_select(0, kept)])
    return to_undirected(visible, num_nodes=n), torch.stack([row.index_select(0, masked), col.index_select(0, masked)])


MASKS = {"edge": mask_edges, "path": mask_paths}


class SparseDropoutPlan:
    """Index arrays of a constant sparse X ``[n, m]`` (a :class:`~vgae_toolkit.ops.sparse.SparseMatrix`) for
    ``dropout(X) @ W``: its non-zeros in row order and, for the backward pass, ordered for ``X^T @ G``
    (:class:`~vgae_toolkit.ops.sparse.TransposePlan`, by the width of G)."""

    def __init__(self, x) -> None:
        self.crow, self.col, self.values = x.csr.crow_indices(), x.csr.col_indices(), x.csr.values()
        self.shape = tuple(x.csr.shape)
        self._transposed: dict[int, TransposePlan] = {}

    def transposed(self, grad: Tensor) -> TransposePlan:
        """The entries ordered for ``X^T @ grad`` (cached per block size)."""
        rows = block_rows(self.shape[0], self.shape[1], grad)
        if rows not in self._transposed:
            self._transposed[rows] = TransposePlan(self.crow, self.col, self.values, self.shape[1], rows)
        return self._transposed[rows]

    def matmul(self, weight: Tensor, p: float) -> Tensor:
        """``dropout(X, p) @ W``: each stored entry kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``."""
        keep = keep_mask(1, self.values.numel(), 1.0 - p, self.values.device).view(-1)
        return _DroppedProduct.apply(weight, self, keep, 1.0 / (1.0 - p))


def _kept(keep: Tensor, crow: Tensor) -> tuple[Tensor, Tensor]:
    """The positions of the kept entries and the CSR row offsets of what is kept (rows given by ``crow``)."""
    counts = torch.zeros(keep.numel() + 1, dtype=torch.long, device=keep.device)
    torch.cumsum(keep, 0, out=counts[1:])
    return keep.nonzero().squeeze(1), counts[crow]


class _DroppedProduct(torch.autograd.Function):
    """``X_kept @ W`` as a weighted bag product; its gradient ``X_kept^T @ G`` as another (not a scatter).

    With most entries kept (``scale < 2``, dropout under 0.5) the bags run over every entry, the dropped
    ones weighted 0, instead of gathering the kept ones first: the same sums (a zero term adds nothing)
    without the compaction."""

    @staticmethod
    def forward(ctx, weight: Tensor, plan: SparseDropoutPlan, keep: Tensor, scale: float) -> Tensor:
        ctx.plan, ctx.keep, ctx.scale = plan, keep, scale
        if scale < 2:
            values, col, offsets = (plan.values * keep).mul_(scale).to(weight.dtype), plan.col, plan.crow
        else:
            index, offsets = _kept(keep, plan.crow)
            values = (plan.values.index_select(0, index) * scale).to(weight.dtype)
            col = plan.col.index_select(0, index)
        return torch.nn.functional.embedding_bag(col, weight.detach(), offsets, mode="sum",
                                                 per_sample_weights=values, include_last_offset=True)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        t, keep = ctx.plan.transposed(grad), ctx.keep
        if ctx.scale < 2:
            values = (t.values * keep.index_select(0, t.order)).mul_(ctx.scale).to(grad.dtype)
            row, offsets = t.row, t.offsets
        else:
            index, offsets = _kept(keep.index_select(0, t.order), t.offsets)
            values, row = (t.values.index_select(0, index) * ctx.scale).to(grad.dtype), t.row.index_select(0, index)
        grad_weight = torch.nn.functional.embedding_bag(row, grad, offsets, mode="sum", per_sample_weights=values,
                                                        include_last_offset=True)
        return t.sum_blocks(grad_weight), None, None, None


def dropout_matmul(x, weight: Tensor, p: float, training: bool, plan: SparseDropoutPlan | None = None) -> Tensor:
    """``dropout(X) @ W`` for constant features X, dense or a cached sparse matrix (:class:`~vgae_toolkit.ops.sparse.SparseMatrix`).

    A sparse X keeps its non-zeros sparse: the surviving entries, scaled by ``1 / (1 - p)``, are summed
    as one weighted bag product over the rows of W (the zeros of X would be dropped to zero anyway);
    ``plan`` (:class:`SparseDropoutPlan` of X) saves rebuilding its index arrays per call.
    ``x=None`` is the featureless X = I, whose dropout drops whole rows of W.
    """
    if not (training and p > 0):
        return weight if x is None else x @ weight
    if x is None:
        keep = (torch.rand(weight.size(0), 1, device=weight.device) >= p).to(weight.dtype)
        return weight * (keep * (1.0 / (1.0 - p)))
    if isinstance(x, Tensor):
        return torch.nn.functional.dropout(x, p, True) @ weight
    return (plan or SparseDropoutPlan(x)).matmul(weight, p)

