"""Sparse matrix products with a cached transpose.

A GCN multiplies by the same two sparse matrices every epoch: the normalised adjacency Â
and (for bag-of-words graphs such as Cora) the feature matrix X. ``torch.sparse.mm``
rebuilds the transpose of a CSR matrix in every backward pass; caching it once makes the
backward pass as cheap as the forward pass.

On the CPU the products run as a weighted ``embedding_bag`` over the CSR arrays (row i of A D is
the sum of the rows of D that row i of A selects, weighted by its values): the same sums as the
CSR kernel, which zero-fills its output and copies it from a column-major buffer on every call.
The products are tested against dense ``A @ D`` and its autograd gradient.
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
        return None, csr_matmul(*ctx.matrix.arrays_t, grad)


def maybe_sparse(x: Tensor, max_density: float = 0.25) -> Tensor | SparseMatrix:
    """Features as a :class:`SparseMatrix` when at most ``max_density`` of them are non-zero."""
    density = float((x != 0).sum()) / max(x.numel(), 1)
    return SparseMatrix.from_dense(x) if density <= max_density else x
