"""The feature-less baselines of the VGAE paper's Table 1: spectral embedding (SC), DeepWalk (DW).

Kipf & Welling (https://arxiv.org/abs/1611.07308) embed nodes with spectral clustering (Tang & Liu,
2011) and DeepWalk (Perozzi et al., 2014, https://arxiv.org/abs/1403.6652), both 128-dimensional,
and score a candidate link (i, j) by the inner product z_i . z_j. Every function here takes the
*training* graph only: val/test edges must never reach them.

Spectral embedding. The plain normalised Laplacian has one zero eigenvalue per connected
component, and a training graph has more than 128 of them (Cora 178, CiteSeer 679 after one
85/5/10 split). Its 128 "smallest" eigenvectors then lie in that degenerate null space: they only
tell which component a node is in, and which ones ARPACK returns is an accident of rounding
(scikit-learn's ``SpectralEmbedding``: Cora 86.6 but CiteSeer 62.7 test AUC; an exact dense
solve: CiteSeer 57-65). We therefore regularise the graph (Amini et al., 2013; Qin & Rohe, 2013,
https://arxiv.org/abs/1309.4111; Zhang & Rohe, 2018, on dangling components):
A_tau = A + tau/N 11^T, tau a small fraction of the mean degree. The graph is then connected and
its spectrum well defined, at no extra cost: the dense rank-one term enters ARPACK's shift-invert
mode through the Sherman-Morrison formula, so only the sparse matrix is factorised.

DeepWalk. Uniform walks are drawn in torch, all walks advancing together, then gensim's compiled
skip-gram (the engine of the original DeepWalk code) learns the embeddings. A skip-gram written
in torch would step through tens of millions of window pairs in Python-driven batches, orders of
magnitude slower, so it is not offered.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, eigsh, splu
from torch import Tensor

# Shift just above the trivial eigenvalue 1 of the normalised adjacency: A_tau - sigma I stays
# non-singular, and the eigenvalues nearest 1 (the smallest of the Laplacian) converge first.
_SHIFT = 1.0 + 1e-3


def _check_graph(edge_index: Tensor, num_nodes: int) -> None:
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")


def spectral_embedding(
    edge_index: Tensor,
    num_nodes: int,
    *,
    dim: int = 128,
    regularization: float = 0.03,
    seed: int = 0,
) -> Tensor:
    r"""Spectral embedding of the training graph (the SC row of the VGAE paper).

    Returns the eigenvectors of the ``dim`` largest non-trivial eigenvalues of the regularised
    normalised adjacency :math:`D_\tau^{-1/2} (A + \frac{\tau}{N} \mathbf{1}\mathbf{1}^\top)
    D_\tau^{-1/2}`, i.e. the smallest of its normalised Laplacian, with
    :math:`D_\tau = D + \tau I` and :math:`\tau` = ``regularization`` x mean degree.

    Args:
        edge_index (LongTensor): both directions of every training edge, ``[2, E]``.
        num_nodes (int): number of nodes N.
        dim (int, optional): embedding size; the VGAE paper uses 128. (default: :obj:`128`)
        regularization (float, optional): tau as a fraction of the mean degree; ``0`` gives the
            plain normalised Laplacian, ill-posed when the graph has more than ``dim``
            components. Over 0.001-1, 0.03 had the best validation AUC on PubMed and was
            within 0.3 of the best Cora + CiteSeer mean (0.003), while staying clear of the
            ill-posed limit (CiteSeer 75.8 at 0.001). (default: :obj:`0.03`)
        seed (int, optional): seeds ARPACK's start vector. (default: :obj:`0`)

    Returns:
        Tensor: float32 embeddings, ``[num_nodes, dim]``.
    """
    _check_graph(edge_index, num_nodes)
    if not 0 < dim < num_nodes - 1:
        raise ValueError(f"dim must lie in [1, num_nodes - 2], got {dim} for {num_nodes} nodes")
    n = num_nodes
    row, col = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(row.size), (row, col)), shape=(n, n))
    adj.sum_duplicates()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    tau = regularization * deg.mean()
    # Isolated nodes without regularisation get a zero row rather than a division by zero.
    inv_sqrt = np.divide(1.0, np.sqrt(deg + tau), out=np.zeros(n), where=deg + tau > 0)
    norm_adj = (sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)).tocsc()
    c = np.sqrt(tau / n) * inv_sqrt  # the rank-one part is c c^T

    matrix = LinearOperator((n, n), matvec=lambda x: norm_adj @ x + c * (c @ x), dtype=np.float64)
    lu = splu((norm_adj - _SHIFT * sp.identity(n, format="csc")).tocsc())
    lu_c = lu.solve(c)
    denom = 1.0 + c @ lu_c

    def shifted_inverse(x: np.ndarray) -> np.ndarray:
        # Sherman-Morrison: (B + c c^T)^-1 x = B^-1 x - B^-1 c (c^T B^-1 x) / (1 + c^T B^-1 c).
        y = lu.solve(np.asarray(x, dtype=np.float64).ravel())
        return y - lu_c * (c @ y) / denom

    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    vals, vecs = eigsh(
        matrix, k=dim + 1, sigma=_SHIFT, which="LM", v0=v0,
        OPinv=LinearOperator((n, n), matvec=shifted_inverse, dtype=np.float64),
    )
    # Largest first, then drop the trivial D^{1/2} 1 direction (as scikit-learn's drop_first).
    vecs = vecs[:, np.argsort(-vals)][:, 1:]
    # Eigenvectors are defined up to sign: make each one's largest entry positive, so that the
    # result does not depend on the LAPACK build.
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(dim)])
    return torch.from_numpy(np.ascontiguousarray(vecs * signs)).float()


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
