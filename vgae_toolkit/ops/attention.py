"""Faster forms of ``torch_geometric.nn`` layers inside :class:`~vgae_toolkit.models.encoders.MessagePassingEncoder`.

The same outputs and gradients as the plain layers, up to float rounding (tests/test_gat_fast_path.py
checks both against ``GATConv``): a feature projection that multiplies a sparse copy of bag-of-words
features, and a ``GATConv`` whose attention-weighted sums over each node's in-edges are one bag product
with a written-out backward pass, on a graph whose self-loops were added once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.dense.linear import Linear

from vgae_toolkit.ops.sparse import SparseMatrix, to_csr


# Convolutions that remove and re-add every node's self-loop on each call unless built with
# add_self_loops=False: the encoder adds them once per graph instead (the same edges, so the same output).
SELF_LOOP_CONVS = ("GATConv", "GATv2Conv")


class FeatureLinear(Linear):
    """``torch_geometric.nn.Linear`` that multiplies the encoder's sparse copy of the node features.

    :class:`MessagePassingEncoder` sets ``sparse_input = (x, X)`` around its first convolution's call:
    when that convolution hands ``x`` itself to this layer, ``X @ W^T`` runs as a sparse product (the
    same sums, a fraction of the work for bag-of-words features); any other input, or no
    ``sparse_input``, takes the dense product. Parameters and state-dict keys are the base class's.
    """

    sparse_input: tuple[Tensor, SparseMatrix] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.sparse_input is not None and x is self.sparse_input[0]:
            out = self.sparse_input[1] @ self.weight.t().contiguous()  # a contiguous right side: the fast kernel
            return out if self.bias is None else out + self.bias
        return super().forward(x)


def _feature_linear(module: nn.Module) -> bool:
    """Turn ``module`` (a ``torch_geometric.nn.Linear``) into a :class:`FeatureLinear` in place."""
    if type(module) is not Linear or module.in_channels <= 0:  # lazy layers keep their own path
        return False
    module.__class__ = FeatureLinear  # the same parameters, initialisation and state-dict keys
    return True


class AttentionPlan:
    """Index arrays of one graph for :class:`_AttentionSum`, built once per graph and head count.

    ``src``/``dst`` are the edges sorted by destination (then source), ``ptr`` their CSR row pointer;
    the attention of edge ``e`` and head ``h`` weighs row ``h * N + src[e]`` of the head-major
    ``[H * N, C]`` features in bag ``h * N + dst[e]``. ``t`` is the order of the edges by source,
    for the transposed product of the backward pass.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        n = num_nodes
        order = torch.argsort(edge_index[1] * n + edge_index[0])
        self.edge_index = edge_index[:, order]
        self.src, self.dst = self.edge_index[0], self.edge_index[1]
        self.num_nodes, self.num_edges = n, self.src.numel()
        self.ptr = self._pointer(self.dst, n)
        self.t = torch.argsort(self.src * n + self.dst)
        self.ptr_t = self._pointer(self.src, n)
        self.heads: dict[int, tuple[Tensor, ...]] = {}

    @staticmethod
    def _pointer(sorted_index: Tensor, n: int) -> Tensor:
        ptr = torch.zeros(n + 1, dtype=torch.long, device=sorted_index.device)
        ptr[1:] = torch.bincount(sorted_index, minlength=n).cumsum(0)
        return ptr

    def for_heads(self, heads: int) -> tuple[Tensor, ...]:
        """``(src rows, bag offsets, transposed rows, transposed offsets, dst rows)`` for ``heads`` heads."""
        if heads not in self.heads:
            n, e = self.num_nodes, self.num_edges
            shift = (torch.arange(heads, device=self.src.device) * n).view(-1, 1)
            edge_shift = (torch.arange(heads, device=self.src.device) * e).view(-1, 1)
            last = torch.tensor([heads * e], device=self.src.device)
            offsets = torch.cat([(edge_shift + self.ptr[:-1]).view(-1), last])
            offsets_t = torch.cat([(edge_shift + self.ptr_t[:-1]).view(-1), last])
            self.heads[heads] = ((shift + self.src).view(-1), offsets, (shift + self.dst[self.t]).view(-1), offsets_t,
                                 (shift + self.dst).view(-1))
        return self.heads[heads]


class _AttentionSum(torch.autograd.Function):
    """``out[i, h] = sum_e alpha[e, h] * x[src_e, h]`` over the edges ``e`` into ``i``, as one weighted
    ``embedding_bag`` over the head-major features: what message passing computes with a gather, a
    product and a scatter of ``[E, H, C]`` messages, without the messages. Backward: the transposed
    bag product for ``x``; for ``alpha``, the dot products of the gradient rows and the source rows."""

    @staticmethod
    def forward(ctx, alpha: Tensor, x: Tensor, plan: AttentionPlan) -> Tensor:
        n, heads, channels = x.shape
        rows, offsets, rows_t, offsets_t, dst_rows = plan.for_heads(heads)
        table = x.detach().permute(1, 0, 2).reshape(heads * n, channels)  # head-major [H * N, C]
        weights = alpha.detach().t().reshape(-1)  # [H * E], head-major as the rows
        out = F.embedding_bag(rows, table, offsets, mode="sum", per_sample_weights=weights, include_last_offset=True)
        ctx.save_for_backward(table, weights)
        ctx.plan, ctx.shape = plan, x.shape
        return out.view(heads, n, channels).permute(1, 0, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        table, weights = ctx.saved_tensors
        n, heads, channels = ctx.shape
        rows, offsets, rows_t, offsets_t, dst_rows = ctx.plan.for_heads(heads)
        grad_t = grad.permute(1, 0, 2).reshape(heads * n, channels)
        grad_x = grad_alpha = None
        if ctx.needs_input_grad[1]:
            e = ctx.plan.num_edges
            weights_t = weights.view(heads, e)[:, ctx.plan.t].reshape(-1)
            grad_x = F.embedding_bag(rows_t, grad_t, offsets_t, mode="sum", per_sample_weights=weights_t,
                                     include_last_offset=True).view(heads, n, channels).permute(1, 0, 2)
        if ctx.needs_input_grad[0]:
            grad_alpha = (grad_t.index_select(0, dst_rows) * table.index_select(0, rows)).sum(-1)
            grad_alpha = grad_alpha.view(heads, -1).t()
        return grad_alpha, grad_x, None


def fused_attention(conv: nn.Module) -> bool:
    """Whether :func:`gat_forward` computes ``conv`` (a plain ``GATConv`` without edge features)."""
    from torch_geometric.nn import GATConv

    return type(conv) is GATConv and conv.lin is not None and conv.edge_dim is None and not conv.add_self_loops


def gat_forward(conv: nn.Module, x: Tensor, plan: AttentionPlan) -> Tensor:
    """``conv(x, edge_index)`` of a ``GATConv`` (:func:`fused_attention`) on the graph of ``plan``, whose edges
    hold every self-loop: the same attention and the same output, aggregated by :class:`_AttentionSum`."""
    from torch_geometric.utils import softmax

    heads, channels = conv.heads, conv.out_channels
    res = conv.res(x) if conv.res is not None else None
    xs = conv.lin(x).view(-1, heads, channels)
    a_src, a_dst = (xs * conv.att_src).sum(dim=-1), (xs * conv.att_dst).sum(dim=-1)
    alpha = a_src.index_select(0, plan.src) + a_dst.index_select(0, plan.dst)
    alpha = F.leaky_relu(alpha, conv.negative_slope)
    alpha = softmax(alpha, None, plan.ptr, plan.num_nodes)  # over each node's in-edges, contiguous: segment sums
    alpha = F.dropout(alpha, p=conv.dropout, training=conv.training)
    out = _AttentionSum.apply(alpha, xs, plan)
    out = out.reshape(-1, heads * channels) if conv.concat else out.mean(dim=1)
    if res is not None:
        out = out + res
    return out if conv.bias is None else out + conv.bias


def fused_mean(conv: nn.Module) -> bool:
    """Whether :func:`sage_forward` computes ``conv``: a plain ``SAGEConv`` with mean aggregation and no
    projection, whose linear maps are built (not lazy)."""
    from torch_geometric.nn import SAGEConv
    from torch_geometric.nn.aggr import MeanAggregation

    return (type(conv) is SAGEConv and isinstance(conv.aggr_module, MeanAggregation) and not conv.project
            and conv.lin_l.in_channels > 0)


def mean_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> SparseMatrix:
    """The ``[N, N]`` matrix whose row i averages the sources of the edges into i (``SAGEConv``'s mean
    aggregation: a repeated edge counts as often as it is given, a node without in-edges gets 0), with
    its transpose cached for the backward pass."""
    src, dst = edge_index[0], edge_index[1]
    deg = torch.bincount(dst, minlength=num_nodes).clamp_min_(1).to(dtype)
    values = deg.reciprocal().index_select(0, dst)
    shape = (num_nodes, num_nodes)
    coo = torch.sparse_coo_tensor  # coalesce() sums the entries of a repeated edge
    matrix = coo(torch.stack([dst, src]), values, shape, check_invariants=False).coalesce()
    transposed = coo(matrix.indices().flip(0), matrix.values(), shape, check_invariants=False).coalesce()
    return SparseMatrix(to_csr(matrix), to_csr(transposed))


def sage_forward(conv: nn.Module, x: Tensor, mean: SparseMatrix, sparse_x: SparseMatrix | None = None) -> Tensor:
    """``conv(x, edge_index)`` of a ``SAGEConv`` (:func:`fused_mean`) on the graph of ``mean``
    (:func:`mean_adjacency`): ``lin_l`` applied before averaging, where it is cheaper (mean_j(x_j) W^T =
    mean_j(x_j W^T) for a linear map), the features multiplied as ``sparse_x`` (their sparse copy) when given.
    ``lin_l``'s bias is added after the average, so a node without in-edges gets it alone, as in the layer."""
    weight = conv.lin_l.weight if not conv.root_weight else torch.cat([conv.lin_l.weight, conv.lin_r.weight])
    both = sparse_x @ weight.t().contiguous() if sparse_x is not None else F.linear(x, weight)
    width = conv.lin_l.out_channels
    out = mean @ both[:, :width].contiguous()
    if conv.lin_l.bias is not None:
        out = out + conv.lin_l.bias
    if conv.root_weight:
        out = out + both[:, width:]
        if conv.lin_r.bias is not None:
            out = out + conv.lin_r.bias
    return F.normalize(out, p=2.0, dim=-1) if conv.normalize else out
