"""Sparse matrix products with a cached transpose.

A GCN multiplies by the same two sparse matrices every epoch: the normalised adjacency Â
and (for bag-of-words graphs such as Cora) the feature matrix X. ``torch.sparse.mm``
rebuilds the transpose of a CSR matrix in every backward pass; caching it once makes the
backward pass as cheap as the forward pass.

On the CPU the products run as a weighted ``embedding_bag`` over the CSR arrays (row i of A D is
the sum of the rows of D that row i of A selects, weighted by its values): the same sums as the
CSR kernel, which zero-fills its output and copies it from a column-major buffer on every call.
The products are tested against dense ``A @ D`` and its autograd gradient.

A product ``A^T @ D`` with A ``[n, m]`` tall and narrow (PubMed's 19,717 x 500 features, in a first
layer's gradient) gathers n-row D once per column of A, a few rows from everywhere: with D bigger than
a core's cache, every gather misses it. :class:`TransposePlan` sums instead over blocks of D's rows that
stay in cache, one bag per block and column, and adds the blocks' partial sums (PubMed, D of 128
columns: several times faster); a D that fits in cache takes the plain transpose.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


def to_csr(matrix: Tensor) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR is in beta": only matmul is relied on
        warnings.simplefilter("ignore", UserWarning)
        return matrix.to_sparse_csr()


def csr_matmul(crow: Tensor, col: Tensor, values: Tensor | None, dense: Tensor) -> Tensor:
    """``A @ dense`` for the CSR matrix A given by its arrays (``crow`` has one more entry than A has
    rows; ``col`` and ``crow`` of one integer type; ``values=None``: every stored value is 1): a
    weighted ``embedding_bag`` on the CPU (unweighted for a 0/1 matrix, the same sums), the sparse
    CSR kernel elsewhere. No gradient flows through it (the callers are autograd functions with their
    own backward pass); a ``dense`` that requires one would make ``embedding_bag`` take its slower,
    differentiable path."""
    dense = dense.detach()
    if values is None:
        if dense.device.type == "cpu" and dense.dim() == 2:
            return F.embedding_bag(col, dense, crow, mode="sum", include_last_offset=True)
        values = torch.ones(col.numel(), dtype=dense.dtype, device=dense.device)
    values = values.detach()
    if dense.device.type == "cpu" and dense.dim() == 2 and values.dtype == dense.dtype:
        return F.embedding_bag(col, dense, crow, mode="sum", per_sample_weights=values, include_last_offset=True)
    shape = (crow.numel() - 1, dense.size(0))
    with warnings.catch_warnings():  # "sparse CSR is in beta": only matmul is relied on
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values.to(dense.dtype), shape, check_invariants=False) @ dense


BLOCK_BYTES = 1 << 19  # rows of D per block of a TransposePlan: 512 KB, a fraction of a core's L2 cache


def block_rows(n: int, m: int, dense: Tensor) -> int:
    """Rows of ``dense`` ``[n, d]`` per block for ``A^T @ dense`` with A ``[n, m]``: ``n`` (one block, the
    plain transpose) off the CPU, when ``dense`` fits in ``BLOCK_BYTES``, or when the blocks' partial
    sums ``[blocks, m, d]`` would outgrow ``dense`` itself."""
    if dense.device.type != "cpu" or dense.dim() != 2:
        return n
    rows = max(1, BLOCK_BYTES // max(dense.size(1) * dense.element_size(), 1))
    blocks = -(-n // rows)
    return n if blocks == 1 or blocks * m > n else rows


class TransposePlan:
    """The stored entries of a CSR matrix A ``[n, m]`` ordered for ``A^T @ D`` over blocks of ``rows`` rows
    of D: by block of their row, then column, then row (a stable sort of the row-ordered entries).

    Attributes:
        order (Tensor): the permutation from A's row-ordered entries to this order.
        row, values (Tensor): the entries' rows and values (``None`` for an all-ones A) in this order.
        offsets (Tensor): where each (block, column) bag starts, ``blocks * m + 1`` entries.
    """

    def __init__(self, crow: Tensor, col: Tensor, values: Tensor | None, m: int, rows: int) -> None:
        n = crow.numel() - 1
        row = torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff())
        self.blocks, self.m = -(-n // rows), m
        key = torch.div(row, rows, rounding_mode="floor") * m + col
        self.order = torch.argsort(key, stable=True)
        self.row = row[self.order]
        self.values = None if values is None else values[self.order]
        self.offsets = torch.zeros(self.blocks * m + 1, dtype=torch.long, device=crow.device)
        self.offsets[1:] = torch.bincount(key, minlength=self.blocks * m).cumsum(0)

    def sum_blocks(self, partial: Tensor) -> Tensor:
        """``[blocks * m, d]`` bag sums to ``A^T @ D`` ``[m, d]``."""
        return partial if self.blocks == 1 else partial.view(self.blocks, self.m, -1).sum(0)

    def matmul(self, dense: Tensor) -> Tensor:
        """``A^T @ dense``: one weighted bag product over the blocks, then their sum."""
        return self.sum_blocks(csr_matmul(self.offsets, self.row, self.values, dense))


def _csr_times(matrix: Tensor, dense: Tensor) -> Tensor:
    return csr_matmul(matrix.crow_indices(), matrix.col_indices(), matrix.values(), dense)


@dataclass(frozen=True)
class SparseMatrix:
    """A constant sparse matrix ``[n, m]`` in CSR form with its transpose cached.

    The CSR arrays (row pointers, columns, detached values) of both are read out once, when the
    matrix is made, so a product passes them straight to :func:`csr_matmul`.

    Args:
        csr (Tensor): the matrix in ``torch.sparse_csr`` layout.
        csr_t (Tensor, optional): its transpose; ``None`` marks a symmetric matrix.
    """

    csr: Tensor
    csr_t: Tensor | None = None
    arrays: tuple[Tensor, Tensor, Tensor | None] = field(init=False, repr=False, compare=False)
    arrays_t: tuple[Tensor, Tensor, Tensor | None] = field(init=False, repr=False, compare=False)
    plans: dict = field(init=False, repr=False, compare=False, default_factory=dict)  # TransposePlan by rows

    def __post_init__(self) -> None:
        arrays = _csr_arrays(self.csr)
        object.__setattr__(self, "arrays", arrays)
        object.__setattr__(self, "arrays_t", arrays if self.csr_t is None else _csr_arrays(self.csr_t))

    @classmethod
    def from_dense(cls, matrix: Tensor) -> "SparseMatrix":
        return cls(to_csr(matrix), to_csr(matrix.t().contiguous()))

    @property
    def shape(self) -> torch.Size:
        return self.csr.shape

    def size(self, dim: int) -> int:
        return self.csr.size(dim)

    def transpose_csr(self) -> Tensor:
        return self.csr if self.csr_t is None else self.csr_t

    def to_dense(self) -> Tensor:
        return self.csr.to_dense()

    def to(self, device: torch.device | str) -> "SparseMatrix":
        return SparseMatrix(self.csr.to(device), None if self.csr_t is None else self.csr_t.to(device))

    def __matmul__(self, dense: Tensor) -> Tensor:
        return _SparseDenseMatmul.apply(self, dense)

    def t_matmul(self, dense: Tensor) -> Tensor:
        """``A^T @ dense`` (no gradient): the cached transpose, or a cached :class:`TransposePlan` where
        ``dense`` is too big for the cache (:func:`block_rows`)."""
        n, m = self.csr.shape
        rows = n if self.csr_t is None else block_rows(n, m, dense)
        if rows >= n:
            return csr_matmul(*self.arrays_t, dense)
        if rows not in self.plans:
            self.plans[rows] = TransposePlan(*self.arrays, m, rows)
        return self.plans[rows].matmul(dense)


def _csr_arrays(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """Row pointers, columns and values; ``None`` for values that are all 1 (bag-of-words features such
    as Cora's), whose product needs no weights."""
    values = matrix.values().detach()
    return matrix.crow_indices(), matrix.col_indices(), None if bool((values == 1).all()) else values


class _SparseDenseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix: SparseMatrix, dense: Tensor) -> Tensor:
        ctx.matrix = matrix
        return csr_matmul(*matrix.arrays, dense)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # d(A @ D)/dD applied to grad is A^T @ grad: the cached transpose, no conversion.
        return None, ctx.matrix.t_matmul(grad)


def maybe_sparse(x: Tensor, max_density: float = 0.25) -> Tensor | SparseMatrix:
    """Features as a :class:`SparseMatrix` when at most ``max_density`` of them are non-zero."""
    density = float((x != 0).sum()) / max(x.numel(), 1)
    return SparseMatrix.from_dense(x) if density <= max_density else x
