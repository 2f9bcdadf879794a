import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch_geometric.utils import stochastic_blockmodel_graph

from vgae_toolkit.models.baselines import (
    deepwalk_embedding,
    inner_product_scores,
    random_walks,
    spectral_embedding,
)


def _undirected(pairs: list[tuple[int, int]]) -> torch.Tensor:
    edges = torch.tensor(pairs).t()
    return torch.cat([edges, edges.flip(0)], dim=1)


# Two triangles joined by the edge 2-3, a pendant node 6 on 5, and node 7 isolated.
TOY = _undirected([(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (4, 5), (3, 5), (5, 6)])
TOY_NODES = 8


def _keys(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    return edge_index[0] * num_nodes + edge_index[1]


def _sbm_link_split(seed: int = 0, num_blocks: int = 4, block_size: int = 75):
    """An SBM graph with 10% of its edges held out, plus as many sampled non-edges."""
    n = num_blocks * block_size
    probs = torch.full((num_blocks, num_blocks), 0.01).fill_diagonal_(0.2)
    with torch.random.fork_rng():  # the generator takes no seed argument; keep global state clean
        torch.manual_seed(seed)
        edge_index = stochastic_blockmodel_graph([block_size] * num_blocks, probs)
    g = torch.Generator().manual_seed(seed)
    und = edge_index[:, edge_index[0] < edge_index[1]]
    und = und[:, torch.randperm(und.size(1), generator=g)]
    num_test = und.size(1) // 10
    test_pos, train = und[:, :num_test], und[:, num_test:]
    cand = torch.randint(0, n, (2, 4 * num_test), generator=g)
    cand = torch.stack([cand.min(0).values, cand.max(0).values])
    cand = cand[:, (cand[0] != cand[1]) & ~torch.isin(_keys(cand, n), _keys(und, n))]
    keys = torch.unique(_keys(cand, n))  # sorted, so shuffle before taking the first num_test
    keys = keys[torch.randperm(keys.numel(), generator=g)][:num_test]
    test_neg = torch.stack([keys // n, keys % n])
    assert test_neg.size(1) == num_test
    return torch.cat([train, train.flip(0)], dim=1), n, test_pos, test_neg


def _auc(emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> float:
    scores = torch.cat([inner_product_scores(emb, pos), inner_product_scores(emb, neg)])
    labels = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
    return roc_auc_score(labels.numpy(), scores.numpy())


def test_inner_product_scores_by_hand():
    emb = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    pairs = torch.tensor([[0, 1, 2], [1, 2, 2]])
    assert torch.allclose(inner_product_scores(emb, pairs), torch.tensor([1.0, 1.0, 0.5]))


def test_walks_shape_starts_and_steps_along_edges():
    walks = random_walks(TOY, TOY_NODES, walks_per_node=7, walk_length=15,
                         generator=torch.Generator().manual_seed(0))
    assert walks.shape == (TOY_NODES * 7, 15) and walks.dtype == torch.long
    assert torch.equal(walks[:, 0], torch.arange(TOY_NODES).repeat(7))
    src, dst = walks[:, :-1].reshape(-1), walks[:, 1:].reshape(-1)
    is_edge = torch.isin(src * TOY_NODES + dst, _keys(TOY, TOY_NODES))
    stays_isolated = (src == 7) & (dst == 7)
    assert bool((is_edge | stays_isolated).all())
    assert bool((walks[walks[:, 0] == 7] == 7).all())


def test_walks_are_reproducible_with_a_seeded_generator():
    def walk(seed):
        return random_walks(TOY, TOY_NODES, walks_per_node=3, walk_length=10,
                            generator=torch.Generator().manual_seed(seed))
    assert torch.equal(walk(1), walk(1))
    assert not torch.equal(walk(1), walk(2))


def test_walks_pick_neighbours_uniformly():
    star = _undirected([(0, 1), (0, 2), (0, 3), (0, 4)])
    walks = random_walks(star, 5, walks_per_node=4000, walk_length=2,
                         generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(walks[walks[:, 0] == 0, 1], minlength=5)
    assert counts[0] == 0
    # 4000 draws, 1000 expected per leaf, sd about 27: 10% is over 3.5 sd.
    assert bool(((counts[1:] - 1000).abs() < 100).all())


def test_spectral_matches_dense_eigendecomposition():
    # A random graph with an isolated node; compare the spanned subspaces (eigenvectors are
    # defined up to sign and rotation within repeated eigenvalues).
    n, dim, reg = 30, 5, 0.03
    g = torch.Generator().manual_seed(0)
    adj = torch.rand(n, n, generator=g) < 0.15
    adj = torch.triu(adj, diagonal=1)
    adj = (adj | adj.t()) & (torch.arange(n) != n - 1)[:, None] & (torch.arange(n) != n - 1)
    edge_index = adj.nonzero().t()
    emb = spectral_embedding(edge_index, n, dim=dim, regularization=reg).double().numpy()

    a = adj.double().numpy()
    deg = a.sum(1)
    tau = reg * deg.mean()
    d = 1 / np.sqrt(deg + tau)
    m = d[:, None] * (a + tau / n) * d[None, :]
    vals, vecs = np.linalg.eigh(m)
    ref = vecs[:, ::-1][:, 1:dim + 1]
    assert vals[-1] == pytest.approx(1.0)
    assert np.allclose(emb.T @ emb, np.eye(dim), atol=1e-6)
    assert np.allclose(emb @ emb.T, ref @ ref.T, atol=1e-6)


def test_spectral_is_deterministic_and_handles_isolated_nodes():
    emb = spectral_embedding(TOY, TOY_NODES, dim=3, seed=0)
    assert emb.shape == (TOY_NODES, 3) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    assert torch.equal(emb, spectral_embedding(TOY, TOY_NODES, dim=3, seed=0))
    with pytest.raises(ValueError):
        spectral_embedding(TOY, TOY_NODES, dim=TOY_NODES)


def test_spectral_predicts_held_out_sbm_links():
    train, n, pos, neg = _sbm_link_split()
    # k - 1 = 3 non-trivial eigenvectors separate 4 blocks; unweighted extra eigenvectors only add
    # noise to the inner products (dim=16 scores about 0.6 here).
    emb = spectral_embedding(train, n, dim=3)
    assert _auc(emb, pos, neg) > 0.75


@pytest.mark.parametrize("negative", [1, 5, 0])  # 0: hierarchical softmax
def test_deepwalk_predicts_held_out_sbm_links(negative):
    pytest.importorskip("gensim")
    train, n, pos, neg = _sbm_link_split()
    emb = deepwalk_embedding(train, n, dim=32, walks_per_node=5, walk_length=20, window=5,
                             negative=negative)
    assert emb.shape == (n, 32)
    assert _auc(emb, pos, neg) > 0.75


def test_deepwalk_is_deterministic_for_a_seed():
    pytest.importorskip("gensim")
    kwargs = dict(dim=8, walks_per_node=2, walk_length=10, window=3)
    first = deepwalk_embedding(TOY, TOY_NODES, seed=3, **kwargs)
    assert torch.equal(first, deepwalk_embedding(TOY, TOY_NODES, seed=3, **kwargs))
    assert not torch.equal(first, deepwalk_embedding(TOY, TOY_NODES, seed=4, **kwargs))


def test_deepwalk_without_gensim_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ImportError, match="pip install gensim"):
        deepwalk_embedding(TOY, TOY_NODES, dim=4, walks_per_node=1, walk_length=5)
