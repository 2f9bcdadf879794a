"""protocol=ours|maskgae|s2gae: one knob between our evaluation protocol and each paper's own."""
import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.builders import build_link_task
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.tasks.link import LinkPredictionTask


def pair_keys(pairs: torch.Tensor, n: int) -> set[int]:
    lo, hi = pairs.min(0).values, pairs.max(0).values
    return set((lo * n + hi).tolist())


def adjacency_pairs(batch, n: int) -> set[int]:
    dense = batch.adj.to_dense()
    dense.fill_diagonal_(0)
    return pair_keys(dense.nonzero().t(), n)


def test_ours_gives_each_seed_its_split_and_maskgae_one_split():
    ours = [compose_cfg("dataset=sbm", f"seed={s}") for s in (0, 1)]
    assert [c.split.seed for c in ours] == [0, 1] and ours[0].split.test_graph == "train"
    theirs = [compose_cfg("dataset=sbm", "protocol=maskgae", f"seed={s}") for s in (0, 1)]
    assert [c.split.seed for c in theirs] == [2022, 2022] and theirs[0].split.test_graph == "train_val"
    a, b = (build_link_task(c).split for c in theirs)
    assert torch.equal(a.test_pos, b.test_pos) and torch.equal(a.val_neg, b.val_neg)


def test_s2gae_protocol_is_one_split_from_its_seed_with_the_training_graph_at_test_time():
    theirs = [compose_cfg("dataset=sbm", "model=s2gae", "protocol=s2gae", f"seed={s}") for s in (0, 3)]
    assert [c.split.seed for c in theirs] == [234, 234] and [c.seed for c in theirs] == [0, 3]
    assert theirs[0].split.test_graph == "train"
    a, b = (build_link_task(c).split for c in theirs)
    assert torch.equal(a.test_pos, b.test_pos) and torch.equal(a.train_pos, b.train_pos)


def test_test_graph_decides_what_the_encoder_sees_at_test_time():
    data = make_sbm(num_nodes=150, num_blocks=3, p_in=0.2, p_out=0.01, seed=0)
    n = 150
    ours = LinkPredictionTask(data, split_seed=0)
    theirs = LinkPredictionTask(data, split_seed=0, test_graph="train_val")
    train, val = pair_keys(ours.split.train_pos, n), pair_keys(ours.split.val_pos, n)
    test = pair_keys(ours.split.test_pos, n)
    for split in ("val", "test"):  # ours: the training edges at every stage
        assert adjacency_pairs(ours.graph_for(split), n) == train
    assert adjacency_pairs(theirs.graph_for("val"), n) == train
    seen = adjacency_pairs(theirs.graph_for("test"), n)
    assert seen == train | val and not seen & test  # validation edges reach the test-time encoder, test never
    edges = theirs.graph_for("test").edge_index
    assert pair_keys(edges, n) == train | val and edges.size(1) == 2 * len(train | val)
    with pytest.raises(ConfigError, match="split.test_graph"):
        LinkPredictionTask(data, split_seed=0, test_graph="all")
