"""The link-prediction protocol end to end: no held-out edge reaches training, the loss is what the
paper composes, training really learns, and evaluation scores the split it names.

Each test here is aimed at a breakage that the unit tests of the pieces cannot see (the list, and
the test that catches each, is kept in ``tests/mutations.py``; ``make mutations`` runs it).
"""
import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import require_files
from helpers import compose_cfg
from vgae_toolkit.data.graphs import load_planetoid, make_sbm
from vgae_toolkit.models.graph import GraphAutoEncoder, GraphBatch
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.run import run
from vgae_toolkit.splits import pair_keys
from vgae_toolkit.tasks.link import LinkPredictionTask
from vgae_toolkit.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def sbm(seed: int = 0):
    """300 nodes in 15 dense blocks: easy to learn, but not from an untrained featureless encoder."""
    return make_sbm(num_nodes=300, num_blocks=15, p_in=0.3, p_out=0.002, seed=seed)


def keys(pairs: torch.Tensor, n: int) -> set[int]:
    return set(pair_keys(pairs, n).tolist())


def adjacency_pairs(adj, n: int) -> tuple[set[int], int]:
    """Undirected off-diagonal pairs of Â, and how many diagonal entries it has."""
    dense = adj.to_dense()
    assert torch.equal(dense, dense.t())
    row, col = dense.nonzero().t()
    return keys(torch.stack([row, col])[:, row < col], n), int((row == col).sum())


def held_out(task: LinkPredictionTask) -> set[int]:
    n = task.data.num_nodes
    return keys(task.split.val_pos, n) | keys(task.split.test_pos, n)


# -- 1. leak-freedom --------------------------------------------------------------------------
def check_training_graph(task: LinkPredictionTask) -> None:
    n = task.data.num_nodes
    train, held = keys(task.split.train_pos, n), held_out(task)
    assert train and held and not train & held
    assert train | held == keys(task.data.edge_index, n)  # every edge is in exactly one part
    # Â: the training edges and the self-loops, nothing else
    pairs, diagonal = adjacency_pairs(task.batch.adj, n)
    assert pairs == train and diagonal == n
    # the positives of the loss
    assert keys(task.batch.pos, n) == train
    # the edge_index a message-passing encoder is given: both directions of the training edges only
    edge_index = task.batch.edge_index
    off_diagonal = edge_index[:, edge_index[0] != edge_index[1]]
    assert keys(off_diagonal, n) == train and off_diagonal.size(1) == 2 * len(train)
    # the per-epoch negatives: the sampler excludes exactly the training edges and the self-loops. It
    # knows nothing of the held-out edges (excluding them would tell the model where they are), so
    # they may be drawn as negatives, exactly as the dense loss labels every non-training pair 0.
    excluded = task.sampler.table.view(n, n).nonzero().t()
    assert keys(excluded[:, excluded[0] != excluded[1]], n) == train
    assert int((excluded[0] == excluded[1]).sum()) == n


def test_small_graph_training_sees_no_held_out_edge():
    task = LinkPredictionTask(sbm(), split_seed=0)
    check_training_graph(task)
    model = GraphAutoEncoder(**task.model_kwargs(), recon="sampled")
    n, train, held = task.data.num_nodes, keys(task.split.train_pos, 300), held_out(task)
    drawn = set()
    for _ in range(100):  # one epoch's batch at a time, as the trainer sees them
        (batch,) = list(task.train_batches(model))
        assert batch.adj is task.batch.adj and batch.pos is task.batch.pos
        negatives = keys(batch.neg, n)
        assert not negatives & train and not (batch.neg[0] == batch.neg[1]).any()
        drawn |= negatives
    assert drawn & held  # the held-out edges are not avoided: the sampler does not know them


def test_cora_training_sees_no_held_out_edge(data_root):
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    check_training_graph(LinkPredictionTask(load_planetoid(data_root, name="cora", download=False), split_seed=0))


class Spy(GraphAutoEncoder):
    """Records every batch the model is encoded with."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[GraphBatch] = []

    def encode(self, batch):
        self.seen.append(batch)
        return super().encode(batch)


@pytest.mark.parametrize("encoder", ["gcn", "gat"])
@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_encodes_with_the_training_edges_only(split, encoder):
    task = LinkPredictionTask(sbm(), split_seed=0)
    model = Spy(**task.model_kwargs(), encoder=encoder)
    task.evaluate(model, split)
    (batch,) = model.seen
    train = keys(task.split.train_pos, 300)
    if encoder == "gcn":  # the built-in GCN reads Â
        pairs, _ = adjacency_pairs(batch.adj, 300)
    else:  # a message-passing encoder reads edge_index
        pairs = keys(batch.edge_index[:, batch.edge_index[0] != batch.edge_index[1]], 300)
    assert pairs == train and not pairs & held_out(task)


# -- 2. loss composition ----------------------------------------------------------------------
def fixed_posterior(model: GraphAutoEncoder, mu: torch.Tensor, logstd: torch.Tensor | None) -> None:
    packed = None if logstd is None else torch.cat([mu, logstd], dim=1)
    model.encode = lambda batch: Posterior(mu) if packed is None else Posterior.from_packed(packed)


def tiny_batch() -> GraphBatch:
    task = LinkPredictionTask(make_sbm(num_nodes=40, num_blocks=2, p_in=0.5, p_out=0.05, seed=0), split_seed=0)
    return task.batch


def test_vgae_loss_is_recon_plus_weighted_kl_with_the_kl_by_hand():
    batch = tiny_batch()
    n = batch.num_nodes
    model = GraphAutoEncoder(in_channels=None, num_nodes=n, latent=2, variational=True)
    # node 0: mu (1, 0), sigma (1, 2); every other node: the prior N(0, I), whose KL is 0
    mu, logstd = torch.zeros(n, 2), torch.zeros(n, 2)
    mu[0, 0], logstd[0, 1] = 1.0, math.log(2.0)
    fixed_posterior(model, mu, logstd)
    # KL(N(mu, sigma^2) || N(0, 1)) = (mu^2 + sigma^2 - 1 - 2 log sigma) / 2: 0.5 + (3 - 2 log 2) / 2
    kl_node0 = 0.5 + (3.0 - 2.0 * math.log(2.0)) / 2
    torch.manual_seed(1)
    out = model.loss(batch)
    assert out["kl"].item() == pytest.approx(kl_node0 / n, rel=1e-6)  # averaged over nodes, positive
    assert model.kl_weight == pytest.approx(1.0 / n)  # the reference code's factor
    assert out["loss"].item() == pytest.approx(out["recon"].item() + out["kl"].item() / n, rel=1e-6)
    # the reconstruction term is the dense loss of the sample z = mu + sigma * eps, eps drawn after the seed
    torch.manual_seed(1)
    z = mu + logstd.exp() * torch.randn(n, 2)
    assert out["recon"].item() == pytest.approx(GraphAutoEncoder._dense_recon(z, batch.pos).item(), rel=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.25, 3.0])
def test_kl_weight_scales_the_kl_term_only(weight):
    batch = tiny_batch()
    n = batch.num_nodes
    model = GraphAutoEncoder(in_channels=None, num_nodes=n, latent=2, kl_weight=weight)
    fixed_posterior(model, torch.ones(n, 2), torch.full((n, 2), -1.0))
    torch.manual_seed(0)
    out = model.loss(batch)
    # per node: (1 + e^-2 - 1 + 2) / 2 per dimension, two dimensions
    assert out["kl"].item() == pytest.approx(2 + math.exp(-2.0), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["recon"].item() + weight * out["kl"].item(), rel=1e-6)


def test_gae_loss_has_no_kl_term():
    batch = tiny_batch()
    model = GraphAutoEncoder(in_channels=None, num_nodes=batch.num_nodes, latent=2, variational=False)
    mu = torch.randn(batch.num_nodes, 2)
    fixed_posterior(model, mu, None)
    out = model.loss(batch)
    assert out["kl"].item() == 0.0 and out["loss"].item() == out["recon"].item()
    assert out["recon"].item() == pytest.approx(GraphAutoEncoder._dense_recon(mu, batch.pos).item(), rel=1e-6)


# -- 3. it really learns, with margins --------------------------------------------------------
@pytest.mark.parametrize("variational", [False, True])
def test_learns_links_far_beyond_an_untrained_model(variational, one_thread):
    # Featureless: the untrained encoder's scores carry little more than Â's smoothing (test AUC
    # 0.53-0.58 over seeds 0-3), trained ones 0.87-0.93 (60 epochs), so the margin is wide.
    torch.manual_seed(0)
    task = LinkPredictionTask(sbm(), features=False, split_seed=0)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=variational)
    untrained = task.evaluate(model, "test")
    assert untrained["test_auc"] < 0.65, untrained  # the fixture is hard for a model that has not learnt
    fit = Trainer(epochs=60, progress=False).fit(model, task.train_batches(model), lambda m: task.evaluate(m, "val"))
    trained = task.evaluate(model, "test")
    assert trained["test_auc"] > untrained["test_auc"] + 0.25 and trained["test_ap"] > 0.82, (untrained, trained)
    assert fit.history[-1]["val_ap"] > fit.history[0]["val_ap"] + 0.15
    if variational:
        # the KL pulls the posterior towards the prior: 14-15 nats per node after 60 epochs over
        # seeds 0-3, while a KL with its sign flipped is pushed up to 63-78
        assert fit.history[-1]["train_kl"] < 30, fit.history[-1]


@pytest.mark.parametrize("overrides", [["model=linear_gae"], ["model=linear_vgae"], ["model=arga"], ["model=argva"],
                                       ["model=gae", "model/encoder=gat"], ["model=gae", "model/encoder=sage"],
                                       ["model=gae", "model/encoder=gin"], ["model=gae", "model/encoder=graphconv"],
                                       ["model=gae", "model/decoder=hadamard_mlp"]], ids=lambda o: o[-1])
def test_every_new_model_learns_far_beyond_its_untrained_self(overrides, one_thread):
    # Featureless SBM, 60 epochs, seed 0: untrained test AUC 0.46-0.78 (GAT the highest), trained
    # 0.87-0.91; over seeds 0-1 the smallest gain was 0.10 (GAT) and the lowest trained AUC 0.83.
    from vgae_toolkit.builders import build_model

    torch.manual_seed(0)
    task = LinkPredictionTask(sbm(), features=False, split_seed=0)
    model = build_model(compose_cfg(*overrides).model, task)
    untrained = task.evaluate(model, "test")["test_auc"]
    Trainer(epochs=60, progress=False).fit(model, task.train_batches(model))
    trained = task.evaluate(model, "test")["test_auc"]
    assert trained > 0.84 and trained > untrained + 0.10, (untrained, trained)


def committed_table1(row: str, dataset: str) -> dict[str, float]:
    with open(ROOT / "experiments" / "table1" / "results.csv", newline="") as f:
        return {r["metric"]: float(r["mean"]) for r in csv.DictReader(f) if (r["row"], r["dataset"]) == (row, dataset)}


@pytest.mark.parametrize("model", ["gae", "vgae"])
def test_cora_default_run_lands_in_its_table1_band(model, data_root, one_thread, tmp_path):
    # Seed 0, the default config. The committed Table 1 means (10 seeds, sd about 1 point) are
    # GAE 90.9/91.9 and VGAE 91.3/92.5; seed 0 gave 90.6/91.7 and 91.2/92.5. A broken model lands
    # below the band; an encoder that sees the held-out edges lands far above (98.1/97.7, 98.9/98.6).
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    metrics = run(compose_cfg(f"model={model}", "dataset=cora", "trainer.progress=false",
                              f"paths.data_dir={data_root}"), tmp_path)
    committed = committed_table1(model.upper(), "cora")
    for metric in ("auc", "ap"):
        ours = 100 * metrics[f"test_{metric}"]
        assert abs(ours - committed[metric]) < 2.5, (metric, ours, committed[metric])


# -- 5. evaluation scores the split it names --------------------------------------------------
class LookupScorer(nn.Module):
    """Logit +1 for the pairs in ``good``, -1 for every other pair."""

    def __init__(self, good: set[int], n: int):
        super().__init__()
        self.good, self.n = good, n

    def score(self, batch, pairs):
        return torch.tensor([1.0 if k in self.good else -1.0 for k in pair_keys(pairs, self.n).tolist()])


def test_evaluate_scores_the_named_split_and_only_it():
    task = LinkPredictionTask(make_sbm(num_nodes=60, num_blocks=3, p_in=0.5, p_out=0.01, seed=0), split_seed=0)
    n = 60
    pair = lambda *cols: torch.tensor(cols).t()  # noqa: E731
    # four disjoint sets of hand-made pairs; the model scores test positives and validation negatives high
    task.split = replace(task.split, test_pos=pair((0, 1), (2, 3)), test_neg=pair((4, 5), (6, 7)),
                         val_pos=pair((8, 9), (10, 11)), val_neg=pair((12, 13), (14, 15)))
    model = LookupScorer(keys(pair((0, 1), (2, 3), (12, 13), (14, 15)), n), n)
    assert task.evaluate(model, "test") == {"test_auc": 1.0, "test_ap": 1.0}
    val = task.evaluate(model, "val")
    assert val["val_auc"] == 0.0 and val["val_ap"] == 0.5  # AP of perfectly inverted scores, 2 of 4 positive
    pos, neg = task.scores(model, "test")
    assert pos.tolist() == [1.0, 1.0] and neg.tolist() == [-1.0, -1.0]
