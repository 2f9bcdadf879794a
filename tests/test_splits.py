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


# direct_max=0: the KeySet path; the default: a byte per ordered pair (graphs of up to 4096 nodes).
# ordered_min=0: pairs ordered by first node (the large-graph draw); the default: in draw order.
PATHS = [(0, None), (1 << 24, None), (0, 0), (1 << 24, 0)]
PATH_IDS = ["keyset", "direct", "keyset-ordered", "direct-ordered"]


def _sampler(pairs, n, seed, direct_max=1 << 24, ordered_min=None):
    extra = {} if ordered_min is None else {"ordered_min": ordered_min}
    return NegativeSampler(pairs, n, torch.Generator().manual_seed(seed), direct_max=direct_max, **extra)


@pytest.mark.parametrize(("direct_max", "ordered_min"), PATHS, ids=PATH_IDS)
def test_training_negatives_avoid_training_edges_and_are_resampled(graph, direct_max, ordered_min):
    n = graph.num_nodes
    split = split_edges(graph.edge_index, n, seed=0)
    sampler = _sampler(split.train_pos, n, 0, direct_max, ordered_min)
    assert (sampler.table is None) == (direct_max == 0)
    assert sampler.ordered == (ordered_min == 0)
    first, second = sampler(5000), sampler(5000)
    assert first.shape == (2, 5000)
    train = keyset(split.train_pos, n)
    for neg in (first, second):
        assert not (keyset(neg, n) & train)
        assert (neg[0] != neg[1]).all()
        assert (neg[0].diff() >= 0).all() == sampler.ordered  # 5000 pairs in draw order are never sorted
    assert not torch.equal(first, second)


@pytest.mark.parametrize("count", [400, 5000], ids=["few-redrawn", "many-redrawn"])
def test_ordered_negatives_merge_the_redrawn_pairs_into_the_order(graph, count):
    n = graph.num_nodes  # about 4% of all pairs are edges: some 16 or 200 rejected and drawn again
    split = split_edges(graph.edge_index, n, seed=0)
    sampler = _sampler(split.train_pos, n, 3, ordered_min=0)
    neg = sampler(count)
    assert neg.shape == (2, count) and (neg[0].diff() >= 0).all()
    assert not (keyset(neg, n) & keyset(split.train_pos, n)) and (neg[0] != neg[1]).all()


@pytest.mark.parametrize(("direct_max", "ordered_min"), PATHS, ids=PATH_IDS)
def test_sampler_is_exhaustive_on_a_dense_graph(direct_max, ordered_min):
    # 5 nodes, 9 of 10 pairs are edges: only one negative pair exists.
    pairs = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2, 2], [1, 2, 3, 4, 2, 3, 4, 3, 4]])
    neg = _sampler(pairs, 5, 0, direct_max, ordered_min)(20)
    assert set(pair_keys(neg, 5).tolist()) == {3 * 5 + 4}
    assert np.unique(pair_keys(neg, 5).numpy()).size == 1
    if ordered_min == 0:  # (3, 4) and (4, 3), in order
        assert (neg[0].diff() >= 0).all()


def test_both_membership_paths_draw_the_same_pairs(graph):
    n = graph.num_nodes
    split = split_edges(graph.edge_index, n, seed=0)
    direct = NegativeSampler(split.train_pos.flip(0), n, torch.Generator().manual_seed(5))
    keyset_path = NegativeSampler(split.train_pos, n, torch.Generator().manual_seed(5), direct_max=0)
    for count in (1, 700, 5000):
        assert torch.equal(direct(count), keyset_path(count))


@pytest.mark.parametrize("ordered_min", [None, 0], ids=["draw-order", "ordered"])
def test_negatives_are_uniform_over_the_non_edges(ordered_min):
    # 6 nodes, edges {0,1}, {1,2}, {4,5}: 30 ordered pairs without self-loops, 6 of them edges.
    # Ordered: a third of the first draw is rejected and drawn again, then merged into the order.
    edges = torch.tensor([[0, 2, 4], [1, 1, 5]])
    neg = _sampler(edges, 6, 0, ordered_min=ordered_min)(24_000)
    assert (neg[0].diff() >= 0).all() == (ordered_min == 0)
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

