"""A graph without enough non-edges for the requested negatives fails by name instead of hanging."""
import itertools
import signal
from contextlib import contextmanager

import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.run import run
from vgae_toolkit.splits import NegativeSampler, split_edges


@contextmanager
def deadline(seconds: int):
    """Fail the test, instead of hanging, when the body runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still sampling after {seconds} s: the sampler loops forever")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def complete_graph(n: int) -> torch.Tensor:
    """Both directions of every pair of ``n`` nodes: ``[2, n (n - 1)]``."""
    pairs = torch.tensor(list(itertools.combinations(range(n), 2))).t()
    return torch.cat([pairs, pairs.flip(0)], dim=1)


@pytest.mark.parametrize("direct_max, ordered_min", [(1 << 24, 25_000), (0, 25_000), (1 << 24, 1)])
def test_sampler_on_a_complete_graph_fails_by_name(direct_max, ordered_min):
    train_pos = complete_graph(6)[:, :15]
    sampler = NegativeSampler(train_pos, 6, torch.Generator().manual_seed(0), direct_max=direct_max,
                              ordered_min=ordered_min)
    with deadline(10), pytest.raises(DataError, match=r"too few non-edges for the 15 requested negatives: "
                                                      r"all 15 node pairs of its 6 nodes are training edges"):
        sampler(15)
    assert sampler(0).shape == (2, 0)  # nothing requested: nothing to fail


def test_one_non_edge_is_enough_for_many_draws():
    train_pos = complete_graph(6)[:, 1:15]  # every pair but (0, 1)
    sampler = NegativeSampler(train_pos, 6, torch.Generator().manual_seed(0))
    with deadline(10):
        pairs = sampler(20)  # negatives are drawn with replacement: the one non-edge, twenty times
    assert {tuple(sorted(p)) for p in pairs.t().tolist()} == {(0, 1)}


def test_split_negatives_need_enough_non_edges():
    edges = complete_graph(7)
    keep = ~(((edges[0] == 0) & (edges[1] == 1)) | ((edges[0] == 1) & (edges[1] == 0)))
    edge_index = edges[:, keep]  # 20 edges, one non-edge
    with deadline(10), pytest.raises(ConfigError, match=r"too few non-edges for the 4 validation and test "
                                                        r"negatives: 7 nodes and 20 edges leave 1 non-edge"):
        split_edges(edge_index, 7, val_frac=0.1, test_frac=0.1)


def test_complete_graph_with_sampled_loss_fails_by_name(tmp_path):
    csv = tmp_path / "k6.csv"
    csv.write_text("source,target\n" + "".join(f"{a},{b}\n" for a, b in itertools.combinations(range(6), 2)))
    cfg = compose_cfg("dataset=edgelist", f"dataset.loader.path={csv}", "split.val_frac=0", "split.test_frac=0",
                      "model.recon=sampled", "trainer.epochs=2", "trainer.progress=false")
    with deadline(30), pytest.raises(DataError, match="too few non-edges"):
        run(cfg, tmp_path / "run")
