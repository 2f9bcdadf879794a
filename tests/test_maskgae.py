"""Masked graph auto-encoders: the masks, the sparse feature dropout, the model, its schedule."""
import math

import pytest
import torch

from conftest import require_files
from helpers import compose_cfg, sbm_task
from vgae_toolkit.builders import build_model
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.maskgae import MaskGAE
from vgae_toolkit.ops.dropout import keep_mask
from vgae_toolkit.ops.masking import SparseDropoutPlan, dropout_matmul, mask_edges, mask_paths
from vgae_toolkit.ops.sparse import SparseMatrix
from vgae_toolkit.run import run
from vgae_toolkit.trainer import Trainer


def keys(edge_index: torch.Tensor, n: int) -> set[int]:
    return set((edge_index[0] * n + edge_index[1]).tolist())


def cycle(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return torch.cat([torch.stack([i, (i + 1) % n]), torch.stack([(i + 1) % n, i])], dim=1)


def test_edge_masking_splits_the_directed_edges():
    task = sbm_task(n=400)
    edges, n = task.batch.edge_index, 400
    torch.manual_seed(0)
    visible, masked = mask_edges(edges, 0.7, n)
    assert keys(masked, n) <= keys(edges, n) and keys(visible, n) <= keys(edges, n)
    assert keys(visible, n) == keys(visible.flip(0), n)  # the visible graph is undirected again
    unmasked = keys(edges, n) - keys(masked, n)
    assert unmasked <= keys(visible, n)
    assert abs(masked.size(1) / edges.size(1) - 0.7) < 0.03
    # an edge is hidden from the encoder only when both orientations are masked (0.7^2 of them)
    hidden = keys(edges, n) - keys(visible, n)
    assert abs(len(hidden) / edges.size(1) - 0.49) < 0.04


def test_path_masking_follows_walks():
    n = 50
    torch.manual_seed(0)
    visible, masked = mask_paths(cycle(n), 1.0, n, walk_length=1)  # every node takes one step
    assert masked.size(1) == n and sorted(masked[0].tolist()) == list(range(n))
    assert torch.isin((masked[1] - masked[0]) % n, torch.tensor([1, n - 1])).all()  # to a neighbour
    # longer walks: consecutive masked edges of one walk chain head to tail
    torch.manual_seed(1)
    _, masked = mask_paths(cycle(n), 1 / n, n, walk_length=5)  # one walk
    assert 1 <= masked.size(1) <= 5
    visible, masked = mask_paths(cycle(n), 0.0, n)
    assert masked.size(1) == 0 and keys(visible, n) == keys(cycle(n), n)
    _, masked = mask_paths(torch.empty(2, 0, dtype=torch.long), 0.7, n)  # no edges: nothing to mask
    assert masked.size(1) == 0


@pytest.mark.parametrize("kind", ["sparse", "dense", "none"])
def test_feature_dropout_product_is_dropout_then_product(kind):
    torch.manual_seed(0)
    x = (torch.rand(30, 20) < 0.2).float() * torch.rand(30, 20)
    weight = torch.randn(30 if kind == "none" else 20, 4, requires_grad=True)
    features = {"sparse": SparseMatrix.from_dense(x), "dense": x, "none": None}[kind]
    plain = weight if kind == "none" else x @ weight
    torch.testing.assert_close(dropout_matmul(features, weight, 0.5, training=False), plain)
    # training: the mean over many draws is the plain product (each survivor scaled by 1/(1-p))
    plan = SparseDropoutPlan(features) if kind == "sparse" else None
    with torch.no_grad():
        mean = sum(dropout_matmul(features, weight, 0.5, training=True, plan=plan) for _ in range(300)) / 300
    torch.testing.assert_close(mean, plain, atol=0.3, rtol=0.1)  # 4-5 standard errors
    out = dropout_matmul(features, weight, 0.5, training=True)
    assert not torch.allclose(out, plain)
    out.sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


@pytest.mark.parametrize("p", [0.3, 0.8])  # most entries kept (bags over all, dropped ones weighted 0) or few
@pytest.mark.parametrize("block_rows", [None, 16])
def test_sparse_feature_dropout_drops_entries_of_x(monkeypatch, block_rows, p):
    from vgae_toolkit.ops import sparse as sparse_ops

    if block_rows:  # the gradient sums blocks of 16 rows (13 blocks), as for PubMed's features
        monkeypatch.setattr(sparse_ops, "BLOCK_BYTES", block_rows * 4 * 4)
    torch.manual_seed(0)
    x = (torch.rand(200, 6) < 0.2).float()
    weight = torch.randn(6, 4, requires_grad=True)
    torch.manual_seed(5)
    features = SparseMatrix.from_dense(x)
    out = dropout_matmul(features, weight, p, training=True, plan=(plan := SparseDropoutPlan(features)))
    grad = torch.randn(200, 4)
    out.backward(grad)
    assert [t.blocks for t in plan._transposed.values()] == [13 if block_rows else 1]
    torch.manual_seed(5)  # the same draws, one per stored non-zero in row order
    keep = keep_mask(1, int(x.count_nonzero()), 1 - p).view(-1)
    dropped = torch.zeros_like(x)
    rows, cols = x.nonzero(as_tuple=True)
    dropped[rows[keep], cols[keep]] = x[rows[keep], cols[keep]] / (1 - p)
    torch.testing.assert_close(out, dropped @ weight)
    torch.testing.assert_close(weight.grad, dropped.t() @ grad)  # the transposed bag product


def test_encoder_sees_training_edges_only(monkeypatch):
    import vgae_toolkit.models.maskgae as maskgae

    task = sbm_task()
    n = task.data.num_nodes
    seen = []
    original = maskgae.visible_adjacency
    monkeypatch.setattr(maskgae, "visible_adjacency", lambda e, m: seen.append(e) or original(e, m))
    torch.manual_seed(0)
    model = build_model(compose_cfg("model=maskgae").model, task)
    Trainer(epochs=3, progress=False).fit(model, task.train_batches(model))
    train = keys(task.split.train_edge_index, n)
    held_out = keys(task.split.val_pos, n) | keys(task.split.test_pos, n)
    held_out |= keys(torch.stack([task.split.val_pos[1], task.split.val_pos[0]]), n)
    assert len(seen) == 3 and all(keys(e, n) <= train and not keys(e, n) & held_out for e in seen)
    assert all(len(keys(e, n)) < len(train) for e in seen)  # each step masks part of the graph


@pytest.mark.parametrize("mask", ["path", "edge", "none"])
@pytest.mark.parametrize("features", [True, False])
def test_maskgae_learns_far_beyond_its_untrained_self(mask, features, one_thread):
    # SBM, 40 epochs at the preset's settings: untrained test AUC 0.49-0.60, trained 0.82-0.83
    torch.manual_seed(0)
    task = sbm_task(features=features)
    model = build_model(compose_cfg("model=maskgae", f"model.mask={mask}").model, task)
    untrained = task.evaluate(model, "test")["test_auc"]
    Trainer(epochs=40, progress=False, grad_clip=1.0, weight_decay=5e-5).fit(model, task.train_batches(model))
    trained = task.evaluate(model, "test")["test_auc"]
    assert trained > 0.78 and trained > untrained + 0.15, (untrained, trained)


def test_loss_is_masked_bce_plus_weighted_degree_error():
    task = sbm_task()
    torch.manual_seed(0)
    model = MaskGAE(**task.model_kwargs(), degree_weight=0.5).eval()  # eval: no dropout, batch norm fixed
    batch = next(iter(task.train_batches(model)))
    torch.manual_seed(1)
    out = model.loss(batch)
    torch.manual_seed(1)
    visible, masked = model.split_edges(batch.edge_index, task.data.num_nodes)
    from vgae_toolkit.tasks.link import normalized_adjacency  # the task's Â, computed its own way

    z = model.encoder(batch.x, normalized_adjacency(visible, task.data.num_nodes))
    neg = batch.neg[:, : masked.size(1)]
    pos_p, neg_p = torch.sigmoid(model.decoder(z, masked)), torch.sigmoid(model.decoder(z, neg))
    bce = -torch.log(pos_p).mean() - torch.log(1 - neg_p).mean()
    degree = torch.bincount(masked[1], minlength=task.data.num_nodes).float()
    mse = ((model.degree_decoder(z) - degree) ** 2).mean()
    torch.testing.assert_close(out["recon"], bce)
    torch.testing.assert_close(out["loss"], bce + 0.5 * mse)
    assert MaskGAE(**task.model_kwargs(), degree_weight=0).degree_decoder is None


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="model.mask="):
        MaskGAE(in_channels=3, num_nodes=10, mask="nodes")
    with pytest.raises(ConfigError, match="mask_ratio"):
        MaskGAE(in_channels=3, num_nodes=10, mask_ratio=1.5)


def test_presets_choose_their_schedule(tmp_path):
    cfg = compose_cfg("model=maskgae")
    assert cfg.trainer.epochs == 500 and cfg.trainer.select == "best" and cfg.trainer.monitor == "val_auc"
    assert cfg.trainer.patience == 20 and cfg.trainer.grad_clip == 1.0 and cfg.trainer.weight_decay == 5e-5
    assert compose_cfg("model=maskgae_edge").model.mask == "edge"
    assert compose_cfg("model=maskgae", "trainer.epochs=7").trainer.epochs == 7  # overrides still win
    metrics = run(compose_cfg("model=maskgae_edge", "dataset=sbm", "dataset.loader.num_nodes=120", "trainer.epochs=20",
                              "trainer.eval_every=2", "trainer.progress=false"), tmp_path)
    assert metrics["mask"] == "edge" and math.isfinite(metrics["test_auc"]) and metrics["selected_epoch"] % 2 == 0


@pytest.mark.slow
def test_cora_seed0_reaches_095(data_root, one_thread, tmp_path):
    # Seed 0, the preset: test AUC/AP 96.2/96.5 (path masking), 96.3/96.6 (edge), about 20-30 s alone
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    metrics = run(compose_cfg("model=maskgae", "dataset=cora", "trainer.progress=false",
                              f"paths.data_dir={data_root}"), tmp_path)
    assert metrics["test_auc"] >= 0.95 and metrics["test_ap"] >= 0.95, metrics


# -- the trainer knobs the schedule uses -------------------------------------------------------
class Line(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def loss(self, batch):
        return {"loss": (self.w * torch.tensor([100.0, 200.0, 300.0])).sum()}


def test_patience_stops_the_fit_and_best_weights_are_kept():
    scores = iter([0.5, 0.9, 0.8, 0.7, 0.6, 0.95, 1.0])
    fit = Trainer(epochs=7, lr=0.1, select="best", monitor="val_x", patience=3, progress=False).fit(
        Line(), [None], lambda m: {"val_x": next(scores)})
    assert fit.epochs_done == 5 and len(fit.history) == 5 and fit.stopped_early  # 3 evaluations without a better one
    assert fit.selected_epoch == 2
    fit = Trainer(epochs=7, lr=0.1, select="best", monitor="val_x", progress=False).fit(
        Line(), [None], lambda m: {"val_x": 0.5})
    assert fit.epochs_done == 7 and not fit.stopped_early  # patience 0: never stops early


def test_grad_clip_bounds_the_step():
    model = Line()
    Trainer(epochs=1, lr=1.0, optimizer="sgd", grad_clip=0.5, progress=False).fit(model, [None])
    assert model.w.norm().item() == pytest.approx(0.5)
    model = Line()
    Trainer(epochs=1, lr=1.0, optimizer="sgd", progress=False).fit(model, [None])
    assert model.w.norm().item() == pytest.approx(math.sqrt(100**2 + 200**2 + 300**2))


def test_visible_adjacency_is_the_normalised_adjacency():
    from vgae_toolkit.models.maskgae import visible_adjacency
    from vgae_toolkit.tasks.link import normalized_adjacency

    task = sbm_task()
    torch.manual_seed(0)
    visible, _ = mask_edges(task.batch.edge_index, 0.5, task.data.num_nodes)
    ours, reference = visible_adjacency(visible, task.data.num_nodes), normalized_adjacency(visible, task.data.num_nodes)
    torch.testing.assert_close(ours.to_dense(), reference.to_dense())
    assert torch.equal(ours.csr.crow_indices(), reference.csr.crow_indices())


def test_walks_start_where_walk_start_says():
    n = 1000
    torch.manual_seed(0)
    _, from_nodes = mask_paths(cycle(n), 0.5, n, walk_length=1, start="node")  # 500 walks, one step each
    _, from_edges = mask_paths(cycle(n), 0.5, n, walk_length=1, start="edge")  # about 1000 walks
    assert from_nodes.size(1) <= 500 and len(set(from_nodes[0].tolist())) == from_nodes.size(1)
    assert from_edges.size(1) > 600  # every drawn edge's first node starts a walk
