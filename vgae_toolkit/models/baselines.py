"""The feature-less baselines of the VGAE paper's Table 1: spectral embedding (SC), DeepWalk (DW).

Kipf & Welling (https://arxiv.org/abs/1611.07308) embed nodes with spectral clustering (Tang & Liu,
2011) and DeepWalk (Perozzi et al., 2014, https://arxiv.org/abs/1403.6652), both 128-dimensional,
and score a candidate link (i, j) by the inner product z_i . z_j. Every function here takes the
*training* graph only: val/test edges must never reach them.

Spectral embedding. The plain normalised Laplacian has one zero eigenvalue per connected
component, and a training graph has more than 128 of them (Cora 178, CiteSeer 679 after one
85/5/10 split). Its 128 "smallest" eigenvectors then lie in that degenerate null space: they only
tell which component a node is in, and which ones a solver returns is an accident of rounding
(scikit-learn's ``SpectralEmbedding``: Cora 86.6 but CiteSeer 62.7 test AUC; an exact dense
solve: CiteSeer 57-65). We therefore regularise the graph (Amini et al., 2013; Qin & Rohe, 2013,
https://arxiv.org/abs/1309.4111; Zhang & Rohe, 2018, on dangling components):
A_tau = A + tau/N 11^T, tau a small fraction of the mean degree. The graph is then connected and
its spectrum well defined.

Repeated eigenvalues remain (small components that are copies of each other, e.g. the many
dangling edges of a citation graph, share their eigenvalues), and an inner-product score
z_i . z_j is well defined only when the embedding holds *whole* eigenspaces: it depends on the
subspace, not on the basis a solver picks inside it. A single-vector Lanczos solver (ARPACK) finds
one vector per eigenvalue in exact arithmetic and misses copies, filling the embedding with
eigenvectors from further down the spectrum. So the embedding is computed either exactly, by a
dense symmetric eigensolver (small graphs), or by a block solver (LOBPCG, Knyazev 2001) on the
shift-inverted operator, whose block of random start vectors spans every copy of a repeated
eigenvalue. The dense rank-one term enters the shift-invert operator through the
Sherman-Morrison formula, so only the sparse matrix is factorised.

DeepWalk. Uniform walks are drawn in torch, all walks advancing together, then gensim's compiled
skip-gram (the engine of the original DeepWalk code) learns the embeddings. A skip-gram written
in torch would step through tens of millions of window pairs in Python-driven batches, orders of
magnitude slower, so it is not offered.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, lobpcg, splu
from torch import Tensor

log = logging.getLogger(__name__)

# Shift just above the trivial eigenvalue 1 of the normalised adjacency: A_tau - sigma I stays
# non-singular, and the eigenvalues nearest 1 (the smallest of the Laplacian) converge first.
_SHIFT = 1.0 + 1e-3
# solver=auto: the exact dense solve up to this many nodes (an N x N float64 matrix: 200 MB at 5000).
DENSE_MAX_NODES = 5000
SOLVERS = ("auto", "dense", "block")
# Eigenvalues closer than this are one repeated eigenvalue (copies agree to about 1e-15 densely,
# 1e-12 from the block solver on CiteSeer).
TIE = 1e-8


def _check_graph(edge_index: Tensor, num_nodes: int) -> None:
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")


def regularized_adjacency(edge_index: Tensor, num_nodes: int,
                          regularization: float = 0.03) -> tuple[sp.csr_matrix, np.ndarray]:
    r"""The regularised normalised adjacency as a sparse part and a rank-one part.

    :math:`D_\tau^{-1/2} (A + \frac{\tau}{N} \mathbf{1}\mathbf{1}^\top) D_\tau^{-1/2} = S + c c^\top`,
    with :math:`D_\tau = D + \tau I` and :math:`\tau` = ``regularization`` x mean degree.

    Returns:
        tuple: ``(S, c)``: the sparse ``[N, N]`` matrix (CSR, float64) and the vector ``[N]``.
    """
    n = num_nodes
    row, col = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(row.size), (row, col)), shape=(n, n))
    adj.sum_duplicates()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    tau = regularization * deg.mean()
    # Isolated nodes without regularisation get a zero row rather than a division by zero.
    inv_sqrt = np.divide(1.0, np.sqrt(deg + tau), out=np.zeros(n), where=deg + tau > 0)
    norm_adj = (sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)).tocsr()
    return norm_adj, np.sqrt(tau / n) * inv_sqrt


def top_eigenpairs_dense(norm_adj: sp.spmatrix, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of ``norm_adj + c c^T``, exactly (LAPACK on the dense matrix).

    Returns:
        tuple: eigenvalues ``[k]`` (largest first) and eigenvectors ``[N, k]``.
    """
    n = norm_adj.shape[0]
    matrix = norm_adj.toarray()
    matrix += np.outer(c, c)
    vals, vecs = sla.eigh(matrix, subset_by_index=[n - k, n - 1], driver="evr")
    return vals[::-1], vecs[:, ::-1]


def top_eigenpairs_block(norm_adj: sp.spmatrix, c: np.ndarray, k: int, *, seed: int = 0, guard: int = 32,
                         tol: float = 1e-4, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``k`` largest eigenpairs of ``M = norm_adj + c c^T`` by LOBPCG on the shift-inverted operator.

    LOBPCG (Knyazev 2001) iterates a block of ``k + guard`` seeded random vectors on
    :math:`-(M - \sigma I)^{-1}`, positive definite for :math:`\sigma` above the spectrum of
    ``M`` (at most 1), whose largest eigenvalues :math:`1 / (\sigma - \lambda)` are those of
    ``M`` nearest 1. A block spans every copy of a repeated eigenvalue (up to its size), which a
    single-vector Lanczos solver does not. The sparse part is factorised once (a symmetric
    fill-reducing order), the rank-one part enters by Sherman-Morrison.

    Args:
        norm_adj (sparse matrix): the symmetric sparse part, ``[N, N]``, eigenvalues at most 1.
        c (ndarray): the rank-one part, ``[N]``.
        k (int): number of eigenpairs.
        seed (int): seeds the start block. (default: :obj:`0`)
        guard (int): extra vectors in the block: they speed convergence at the cut and hold
            the copies of an eigenvalue repeated across it. (default: :obj:`32`)
        tol (float): residual norm, on the scale of the shift-inverted operator (eigenvalues up to
            1 / (sigma - 1) = 1000), at which LOBPCG stops; on PubMed 1e-4 leaves residuals of
            ``M`` near 1e-6 and principal angles to a 1e-8 solve near 1e-5. (default: :obj:`1e-4`)
        max_iter (int): iteration limit. (default: :obj:`1000`)

    Returns:
        tuple: eigenvalues ``[k]`` (largest first) and eigenvectors ``[N, k]``, orthonormal.
    """
    n = norm_adj.shape[0]
    size = min(k + guard, n - 1)
    # SymmetricMode with a minimum-degree order on A + A^T: about 4x less fill than the default
    # column order on a citation graph, so each block solve is about 4x cheaper.
    lu = splu((norm_adj - _SHIFT * sp.identity(n, format="csc")).tocsc(), permc_spec="MMD_AT_PLUS_A",
              options={"SymmetricMode": True})
    lu_c = lu.solve(c)
    denom = 1.0 + c @ lu_c

    def operator(x: np.ndarray) -> np.ndarray:
        # Sherman-Morrison: (B + c c^T)^-1 x = B^-1 x - B^-1 c (c^T B^-1 x) / (1 + c^T B^-1 c), negated.
        x = np.asarray(x, dtype=np.float64).reshape(n, -1)
        y = lu.solve(x)
        return np.outer(lu_c, c @ y) / denom - y

    start = np.random.default_rng(seed).standard_normal((n, size))
    op = LinearOperator((n, n), matvec=operator, matmat=operator, dtype=np.float64)
    with warnings.catch_warnings():  # "not reaching the requested tolerance" is checked below, by residuals
        warnings.simplefilter("ignore", UserWarning)
        theta, vecs = lobpcg(op, start, tol=tol, maxiter=max_iter, largest=True)
    vals = _SHIFT - 1.0 / theta
    order = np.argsort(-vals)[:k]
    vals, vecs = vals[order], vecs[:, order]
    residual = np.linalg.norm(norm_adj @ vecs + np.outer(c, c @ vecs) - vecs * vals, axis=0).max()
    if residual > 1e-4:
        log.warning("spectral embedding: the block solver stopped at residual %.1e after %d iterations; the "
                    "embedding may be inexact (model.solver=dense solves exactly)", residual, max_iter)
    return vals, vecs


def spectral_embedding(
    edge_index: Tensor,
    num_nodes: int,
    *,
    dim: int = 128,
    regularization: float = 0.03,
    seed: int = 0,
    solver: str = "auto",
) -> Tensor:
    r"""Spectral embedding of the training graph (the SC row of the VGAE paper).

    Returns the eigenvectors of the ``dim`` largest non-trivial eigenvalues of the regularised
    normalised adjacency :math:`D_\tau^{-1/2} (A + \frac{\tau}{N} \mathbf{1}\mathbf{1}^\top)
    D_\tau^{-1/2}`, i.e. the smallest of its normalised Laplacian, with
    :math:`D_\tau = D + \tau I` and :math:`\tau` = ``regularization`` x mean degree.
    Inside the eigenspace of a repeated eigenvalue the basis is the solver's, but the span, and
    so every inner product z_i . z_j, is the same for both solvers. An eigenvalue repeated across
    the cut at ``dim`` (CiteSeer: the 50-64 isolated edges of a training graph share one) would
    leave the choice of its eigenvectors to the solver: its eigenvectors are left out and their
    columns are zero, so that the embedding holds whole eigenspaces only.

    Args:
        edge_index (LongTensor): both directions of every training edge, ``[2, E]``.
        num_nodes (int): number of nodes N.
        dim (int, optional): embedding size; the VGAE paper uses 128. (default: :obj:`128`)
        regularization (float, optional): tau as a fraction of the mean degree; ``0`` gives the
            plain normalised Laplacian, ill-posed when the graph has more than ``dim``
            components. Over 0.001-1, 0.03 had the best validation AUC on PubMed and was
            within 0.3 of the best Cora + CiteSeer mean (0.003), while staying clear of the
            ill-posed limit (CiteSeer 75.8 at 0.001). (default: :obj:`0.03`)
        seed (int, optional): seeds the block solver's start vectors. (default: :obj:`0`)
        solver (str, optional): ``dense`` (exact, O(N^2) memory and O(N^3) time), ``block``
            (:func:`top_eigenpairs_block`, sparse) or ``auto``: dense up to
            :data:`DENSE_MAX_NODES` nodes. (default: :obj:`auto`)

    Returns:
        Tensor: float32 embeddings, ``[num_nodes, dim]``; the columns of an eigenvalue repeated
        across the cut are zero.
    """
    _check_graph(edge_index, num_nodes)
    if not 0 < dim < num_nodes - 1:
        raise ValueError(f"dim must lie in [1, num_nodes - 2], got {dim} for {num_nodes} nodes")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    norm_adj, c = regularized_adjacency(edge_index, num_nodes, regularization)
    # dim + 2 pairs: the trivial one, the dim kept, and the next, which tells whether an eigenvalue
    # is repeated across the cut
    dense = solver == "dense" or (solver == "auto" and num_nodes <= DENSE_MAX_NODES) or dim + 2 >= num_nodes - 1
    if dense:
        vals, vecs = top_eigenpairs_dense(norm_adj, c, dim + 2)
    else:
        vals, vecs = top_eigenpairs_block(norm_adj, c, dim + 2, seed=seed)
    # Largest first, then drop the trivial D^{1/2} 1 direction (as scikit-learn's drop_first).
    vals, vecs = vals[1:], vecs[:, 1:]
    keep = dim
    if vals[dim - 1] - vals[dim] < TIE:
        # Only part of this eigenspace fits: any part is as good as any other, so none is kept
        # and the embedding stays a function of the graph (zero columns score nothing).
        keep = int((vals[:dim] > vals[dim] + TIE).sum())
        log.info("spectral embedding: eigenvalue %.6f is repeated across the cut at dim=%d: its %d eigenvectors "
                 "inside are left out, %d dimensions are used", vals[dim], dim, dim - keep, keep)
    vecs = vecs[:, :keep]
    # Eigenvectors are defined up to sign: make each one's largest entry positive, so that the
    # result does not depend on the LAPACK build.
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(keep)])
    emb = np.zeros((num_nodes, dim), dtype=np.float32)
    emb[:, :keep] = vecs * signs
    return torch.from_numpy(emb)


def _csr(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(rowptr, col, deg)`` of the graph, neighbours of each node sorted by id."""
    row, col = edge_index.cpu()
    order = torch.argsort(row * num_nodes + col)  # sorted rows, then columns: a unique layout
    col = col[order]
    deg = torch.bincount(row, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    rowptr[1:] = deg.cumsum(0)
    return rowptr, col, deg


def random_walks(
    edge_index: Tensor,
    num_nodes: int,
    *,
    walks_per_node: int = 10,
    walk_length: int = 80,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Uniform random walks, all advanced one step at a time in torch.

    Walk ``r * num_nodes + v`` is round ``r``'s walk from node ``v``. Each step moves to a
    uniformly chosen neighbour, ``col[rowptr[cur] + floor(u * deg[cur])]`` with u ~ U[0, 1);
    an isolated node stays where it is.

    Args:
        edge_index (LongTensor): both directions of every training edge, ``[2, E]``.
        num_nodes (int): number of nodes N.
        walks_per_node (int, optional): walks started from every node. (default: :obj:`10`)
        walk_length (int, optional): nodes per walk, the start included. (default: :obj:`80`)
        generator (torch.Generator, optional): source of randomness, for reproducible walks.

    Returns:
        LongTensor: ``[num_nodes * walks_per_node, walk_length]``.
    """
    _check_graph(edge_index, num_nodes)
    if walk_length < 1:
        raise ValueError(f"walk_length must be at least 1, got {walk_length}")
    rowptr, col, deg = _csr(edge_index, num_nodes)
    last = max(col.numel() - 1, 0)
    col = col if col.numel() else torch.zeros(1, dtype=torch.long)  # keep the gather legal
    cur = torch.arange(num_nodes).repeat(walks_per_node)
    walks = torch.empty(cur.numel(), walk_length, dtype=torch.long)
    walks[:, 0] = cur
    for step in range(1, walk_length):
        d = deg[cur]
        u = torch.rand(cur.numel(), generator=generator, dtype=torch.float64)
        # u * d can round up to d itself for large d; the clamp keeps the pick in range.
        offset = torch.minimum((u * d).long(), (d - 1).clamp(min=0))
        nxt = col[(rowptr[cur] + offset).clamp(max=last)]
        cur = torch.where(d > 0, nxt, cur)
        walks[:, step] = cur
    return walks


def deepwalk_embedding(
    edge_index: Tensor,
    num_nodes: int,
    *,
    dim: int = 128,
    walks_per_node: int = 10,
    walk_length: int = 80,
    window: int = 10,
    negative: int = 5,
    epochs: int = 1,
    seed: int = 0,
    workers: int = 1,
) -> Tensor:
    """DeepWalk embeddings (the DW row of the VGAE paper): skip-gram over uniform random walks.

    The defaults are the VGAE paper's (128 dimensions, 10 walks of length 80 per node, window
    10, one epoch). The skip-gram uses negative sampling by default; ``negative=0`` switches to
    the hierarchical softmax of the original DeepWalk code: on two Cora and two CiteSeer splits
    it scored within 2 points of the same AUC and 0-4 points more AP, at the same cost.

    Args:
        edge_index (LongTensor): both directions of every training edge, ``[2, E]``.
        num_nodes (int): number of nodes N.
        dim (int, optional): embedding size. (default: :obj:`128`)
        walks_per_node (int, optional): walks started from every node. (default: :obj:`10`)
        walk_length (int, optional): nodes per walk. (default: :obj:`80`)
        window (int, optional): maximum skip-gram context distance. (default: :obj:`10`)
        negative (int, optional): negative samples per context pair; ``0`` trains with
            hierarchical softmax instead. (default: :obj:`5`)
        epochs (int, optional): passes over the walks. (default: :obj:`1`)
        seed (int, optional): seeds the walks and Word2Vec. (default: :obj:`0`)
        workers (int, optional): Word2Vec threads; only ``1`` is reproducible, since threads
            race on the shared weights. (default: :obj:`1`)

    Returns:
        Tensor: float32 embeddings, ``[num_nodes, dim]``. Every node starts walks, isolated
        ones included, so every node has a trained row.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError as err:
        raise ImportError(
            "deepwalk_embedding needs gensim: pip install gensim "
            "(or pip install 'vgae-toolkit[baselines]')"
        ) from err
    if walks_per_node < 1:
        raise ValueError(f"walks_per_node must be at least 1, got {walks_per_node}")

    generator = torch.Generator().manual_seed(seed)
    walks = random_walks(
        edge_index, num_nodes, walks_per_node=walks_per_node, walk_length=walk_length,
        generator=generator,
    )
    # Shuffle walk order as DeepWalk does, so that the decaying learning rate is not tied to
    # node ids (walk r * N + v starts at node v).
    walks = walks[torch.randperm(walks.size(0), generator=generator)]
    # String tokens, not ints: gensim 4 builds its negative-sampling table by passing vocabulary
    # *indices* to get_vecattr, which reads an int as a *key* when it is one, so int node ids
    # silently draw negatives from a permuted distribution. (gensim 4 seeds its initial vectors
    # from ``seed``, not from hash(), so str tokens do not depend on PYTHONHASHSEED.)
    # One shared str object per node, not one per token: the token lists then hold references only.
    tokens = np.array([str(node) for node in range(num_nodes)], dtype=object)
    sentences = tokens[walks.numpy()].tolist()
    # sample=0: no down-sampling of frequent tokens, which drops occurrences of high-degree
    # nodes; 1e-3 changed neither AUC nor AP beyond noise on Cora and CiteSeer.
    model = Word2Vec(
        sentences, vector_size=dim, window=window, min_count=0, sg=1, hs=int(negative == 0),
        negative=negative, sample=0, epochs=epochs, seed=seed, workers=workers,
    )
    emb = torch.zeros(num_nodes, dim)  # rows by node id; gensim orders them by frequency
    nodes = torch.tensor([int(key) for key in model.wv.index_to_key], dtype=torch.long)
    emb[nodes] = torch.from_numpy(model.wv.vectors).float()
    return emb


def inner_product_scores(emb: Tensor, pairs: Tensor) -> Tensor:
    """Link scores z_i . z_j (logits of the inner-product decoder) of node pairs.

    Args:
        emb (Tensor): node embeddings, ``[num_nodes, dim]``.
        pairs (LongTensor): candidate links, ``[2, P]``.

    Returns:
        Tensor: ``[P]``.
    """
    return (emb[pairs[0]] * emb[pairs[1]]).sum(dim=-1)
