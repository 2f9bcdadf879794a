"""SC made exact: the dense and the block eigensolver find the same subspace, repeated eigenvalues
included, and the SC row on Cora reaches the exact embedding's numbers."""
import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from conftest import require_files
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.baselines import (
    regularized_adjacency,
    spectral_embedding,
    top_eigenpairs_block,
    top_eigenpairs_dense,
)
from vgae_toolkit.models.embedding import SpectralEmbedding

# A connected 8-node graph with distinct eigenvalues: a 5-cycle with a tail and a chord.
UNIT = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3), (4, 5), (5, 6), (6, 7)]


def copies(count: int, pairs=UNIT, size: int = 8) -> tuple[torch.Tensor, int]:
    """``count`` disjoint copies of one graph: every eigenvalue of a copy repeats ``count - 1`` times."""
    edges = torch.tensor(pairs).t()
    edges = torch.cat([edges + size * i for i in range(count)], dim=1)
    return torch.cat([edges, edges.flip(0)], dim=1), count * size


def cut_at_gap(vals: np.ndarray, low: int, high: int) -> int:
    """The number k in [low, high] of leading eigenvalues that ends at the widest gap."""
    gaps = vals[low - 1:high] - vals[low:high + 1]
    return low + int(np.argmax(gaps))


def test_copies_have_repeated_eigenvalues():
    edge_index, n = copies(30)
    vals, _ = top_eigenpairs_dense(*regularized_adjacency(edge_index, n), n - 1)
    # 29 copies of each eigenvalue of one copy (differences across copies), 1 of each symmetric mode
    _, counts = np.unique(np.round(vals, 8), return_counts=True)
    assert counts.max() == 29


def test_block_solver_finds_every_copy_of_a_repeated_eigenvalue():
    edge_index, n = copies(40)  # 320 nodes: the block (k + 8 vectors) stays below n / 5, LOBPCG proper
    norm_adj, c = regularized_adjacency(edge_index, n)
    dense_all, _ = top_eigenpairs_dense(norm_adj, c, n - 1)
    k = cut_at_gap(dense_all, 40, 50)  # the trivial vector, 39 copies, and what follows up to a clear gap
    assert dense_all[k - 1] - dense_all[k] > 1e-3
    vals_d, vecs_d = top_eigenpairs_dense(norm_adj, c, k)
    vals_b, vecs_b = top_eigenpairs_block(norm_adj, c, k, seed=3, guard=8, tol=1e-9)
    np.testing.assert_allclose(vals_b, vals_d, atol=1e-8)
    # the same subspace: every principal angle is zero
    assert np.max(subspace_angles(vecs_d, vecs_b)) < 1e-5
    np.testing.assert_allclose(vecs_b.T @ vecs_b, np.eye(k), atol=1e-8)


def test_dense_and_block_embeddings_score_links_alike():
    edge_index, n = copies(80)  # 640 nodes: the default block (dim + 33 vectors) stays below n / 5
    norm_adj, c = regularized_adjacency(edge_index, n)
    vals, _ = top_eigenpairs_dense(norm_adj, c, n - 1)
    dim = cut_at_gap(vals, 80, 90) - 1  # the trivial vector is dropped
    dense = spectral_embedding(edge_index, n, dim=dim, solver="dense").double()
    block = spectral_embedding(edge_index, n, dim=dim, solver="block", seed=1).double()
    # inside a repeated eigenspace the bases differ, but z_i . z_j depends only on the subspace
    assert not torch.allclose(dense, block, atol=1e-3)
    torch.testing.assert_close(block @ block.T, dense @ dense.T, atol=1e-5, rtol=0)


def test_an_eigenvalue_repeated_across_the_cut_is_left_out_whole():
    edge_index, n = copies(80)
    norm_adj, c = regularized_adjacency(edge_index, n)
    vals = top_eigenpairs_dense(norm_adj, c, 100)[0][1:]  # the non-trivial ones
    start = int(np.argmax(np.abs(vals[:-78] - vals[78:]) < 1e-10))  # the first 79-fold eigenvalue
    dim = start + 10  # the cut falls inside its eigenspace
    dense = spectral_embedding(edge_index, n, dim=dim, solver="dense").double()
    block = spectral_embedding(edge_index, n, dim=dim, solver="block", seed=2).double()
    for emb in (dense, block):
        assert (emb.abs().sum(dim=0) > 0).tolist() == [True] * start + [False] * 10
    torch.testing.assert_close(block @ block.T, dense @ dense.T, atol=1e-5, rtol=0)


def test_auto_solver_is_dense_on_small_graphs():
    edge_index, n = copies(30)
    assert torch.equal(spectral_embedding(edge_index, n, dim=8), spectral_embedding(edge_index, n, dim=8,
                                                                                   solver="dense"))


def test_unknown_solver_is_refused():
    edge_index, n = copies(3)
    with pytest.raises(ValueError, match="solver"):
        spectral_embedding(edge_index, n, dim=4, solver="arpack")
    with pytest.raises(ConfigError, match="model.solver"):
        SpectralEmbedding(in_channels=None, num_nodes=n, dim=4, solver="lanczos")


@pytest.mark.slow
def test_sc_on_cora_reaches_the_exact_embedding(data_root, one_thread):
    """The SC row, Cora seed 0 (no eigenvalue repeated across the cut): exact embedding 90.0/91.1 test
    AUC/AP (single-vector Lanczos: 88.1/89.8)."""
    from vgae_toolkit.data.graphs import load_planetoid
    from vgae_toolkit.metrics import link_scores
    from vgae_toolkit.models.baselines import inner_product_scores
    from vgae_toolkit.tasks.link import LinkPredictionTask

    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    task = LinkPredictionTask(load_planetoid(data_root, name="cora", download=False), split_seed=0)
    pos = task.split.train_pos
    emb = spectral_embedding(torch.cat([pos, pos.flip(0)], dim=1), task.data.num_nodes, seed=0)
    split = task.split
    scores = link_scores(inner_product_scores(emb, split.test_pos), inner_product_scores(emb, split.test_neg))
    assert scores["auc"] == pytest.approx(0.900, abs=0.002)
    assert scores["ap"] == pytest.approx(0.911, abs=0.002)
