import numpy as np
import pytest
import torch

from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.splits import KeySet, NegativeSampler, pair_keys, split_edges, without_columns


@pytest.fixture(scope="module")
def graph():
    return make_sbm(num_nodes=300, num_blocks=3, p_in=0.1, p_out=0.01, seed=1)


def keyset(pairs, n):
    return set(pair_keys(pairs, n).tolist())


def test_sizes_follow_fractions(graph):
    split = split_edges(graph.edge_index, graph.num_nodes, val_frac=0.05, test_frac=0.10, seed=0)
    num_edges = graph.edge_index.size(1) // 2
    sizes = split.sizes()
    assert sizes["val_pos"] == sizes["val_neg"] == int(num_edges * 0.05)
    assert sizes["test_pos"] == sizes["test_neg"] == int(num_edges * 0.10)
    assert sizes["train_pos"] + sizes["val_pos"] + sizes["test_pos"] == num_edges


def test_disjoint_and_no_leakage(graph):
    n = graph.num_nodes
    split = split_edges(graph.edge_index, n, seed=0)
    train, val, test = keyset(split.train_pos, n), keyset(split.val_pos, n), keyset(split.test_pos, n)
    val_neg, test_neg = keyset(split.val_neg, n), keyset(split.test_neg, n)
    all_pos = keyset(graph.edge_index, n)
    assert train | val | test == all_pos
    assert not (train & val) and not (train & test) and not (val & test)
    assert not (val_neg & all_pos) and not (test_neg & all_pos) and not (val_neg & test_neg)
    assert len(val_neg) == split.val_neg.size(1) and len(test_neg) == split.test_neg.size(1)  # no repeats
    for pairs in (split.val_neg, split.test_neg):
        assert (pairs[0] != pairs[1]).all()
    # the encoder's graph holds training edges only, in both directions
    message_passing = keyset(split.train_edge_index, n)
    assert message_passing == train
    assert split.train_edge_index.size(1) == 2 * len(train)


def test_same_seed_same_split_other_seed_other_split(graph):
    a = split_edges(graph.edge_index, graph.num_nodes, seed=3)
    b = split_edges(graph.edge_index, graph.num_nodes, seed=3)
    c = split_edges(graph.edge_index, graph.num_nodes, seed=4)
    for name in ("train_pos", "val_pos", "val_neg", "test_pos", "test_neg"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.test_pos, c.test_pos)


def test_too_few_edges_is_a_clear_error():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    with pytest.raises(ConfigError, match="cannot be split"):
        split_edges(edge_index, 3, val_frac=0.05, test_frac=0.1)
    with pytest.raises(ConfigError, match="sum below 1"):
        split_edges(edge_index, 3, val_frac=0.5, test_frac=0.5)


# direct_max=0: the KeySet path; the default: a byte per ordered pair (graphs of up to 4096 nodes)
@pytest.mark.parametrize("direct_max", [0, 1 << 24])
def test_training_negatives_avoid_training_edges_and_are_resampled(graph, direct_max):
    n = graph.num_nodes
    split = split_edges(graph.edge_index, n, seed=0)
    sampler = NegativeSampler(split.train_pos, n, torch.Generator().manual_seed(0), direct_max=direct_max)
    assert (sampler.table is None) == (direct_max == 0)
    first, second = sampler(5000), sampler(5000)
    assert first.shape == (2, 5000)
    train = keyset(split.train_pos, n)
    for neg in (first, second):
        assert not (keyset(neg, n) & train)
        assert (neg[0] != neg[1]).all()
    assert not torch.equal(first, second)


@pytest.mark.parametrize("direct_max", [0, 1 << 24])
def test_sampler_is_exhaustive_on_a_dense_graph(direct_max):
    # 5 nodes, 9 of 10 pairs are edges: only one negative pair exists.
    pairs = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2, 2], [1, 2, 3, 4, 2, 3, 4, 3, 4]])
    sampler = NegativeSampler(pairs, 5, torch.Generator().manual_seed(0), direct_max=direct_max)
    neg = sampler(20)
    assert set(pair_keys(neg, 5).tolist()) == {3 * 5 + 4}
    assert np.unique(pair_keys(neg, 5).numpy()).size == 1


def test_both_membership_paths_draw_the_same_pairs(graph):
    n = graph.num_nodes
    split = split_edges(graph.edge_index, n, seed=0)
    direct = NegativeSampler(split.train_pos.flip(0), n, torch.Generator().manual_seed(5))
    keyset_path = NegativeSampler(split.train_pos, n, torch.Generator().manual_seed(5), direct_max=0)
    for count in (1, 700, 5000):
        assert torch.equal(direct(count), keyset_path(count))


def test_negatives_are_uniform_over_the_non_edges():
    # 6 nodes, edges {0,1}, {1,2}, {4,5}: 30 ordered pairs without self-loops, 6 of them edges
    edges = torch.tensor([[0, 2, 4], [1, 1, 5]])
    sampler = NegativeSampler(edges, 6, torch.Generator().manual_seed(0))
    neg = sampler(24_000)
    counts = torch.bincount(neg[0] * 6 + neg[1], minlength=36).view(6, 6)
    allowed = ~torch.eye(6, dtype=torch.bool)
    allowed[edges[0], edges[1]] = allowed[edges[1], edges[0]] = False
    assert counts[~allowed].sum() == 0
    # 24 allowed ordered pairs, 1000 draws expected each (standard deviation about 31)
    assert counts[allowed].numel() == 24 and counts[allowed].min() > 850 and counts[allowed].max() < 1150


@pytest.mark.parametrize("num_keys", [0, 1, 37, 5000])
def test_keyset_answers_exactly_like_a_set(num_keys):
    gen = torch.Generator().manual_seed(num_keys)
    keys = torch.randint(-(2**62), 2**62, (num_keys,), generator=gen)
    keys = torch.cat([keys, keys[: num_keys // 3]])  # repeats are one member
    queries = torch.cat([keys, torch.randint(-(2**62), 2**62, (20000,), generator=gen), keys + 1, torch.arange(-50, 50)])
    members = set(keys.tolist())
    expected = torch.tensor([q in members for q in queries.tolist()])
    assert torch.equal(KeySet(keys).contains(queries), expected)


@pytest.mark.parametrize("dropped", [0, 1, 5, 200, 1000])
def test_without_columns_keeps_the_other_columns_in_order(dropped):
    g = torch.Generator().manual_seed(dropped)
    pairs = torch.randint(0, 50, (2, 1000), generator=g)
    drop = torch.zeros(1000, dtype=torch.bool)
    drop[torch.randperm(1000, generator=g)[:dropped]] = True
    drop[0] = drop[-1] = dropped > 0  # runs that start and end the draw
    expected = torch.stack([pairs[0][~drop], pairs[1][~drop]])
    assert torch.equal(without_columns(pairs, drop), expected)  # 200 and 1000 take the masked_select path

