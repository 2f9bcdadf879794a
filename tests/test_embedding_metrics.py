"""Embeddings judged beyond links: Hits@K and MRR (OGB's definitions), node clustering, linear probe."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import require_files
from helpers import compose_cfg
from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.metrics import (
    cluster_scores,
    clustering_accuracy,
    hits_at_k,
    linear_probe,
    mrr,
    ranking_scores,
)
from vgae_toolkit.run import run
from vgae_toolkit.tasks.link import LinkPredictionTask

T = torch.tensor


# -- Hits@K ---------------------------------------------------------------------------------


def test_hits_counts_only_positives_strictly_above_the_kth_negative():
    neg = T([5.0, 4.0, 3.0, 2.0, 1.0])
    pos = T([4.0, 4.5, 6.0, 1.0])  # 4.0 ties the 2nd highest negative: a miss
    assert hits_at_k(pos, neg, 2) == 0.5
    assert hits_at_k(pos, neg, 1) == 0.25  # only 6.0 beats 5.0
    assert hits_at_k(pos, neg, 5) == 0.75  # 1.0 ties the 5th: a miss


def test_hits_with_fewer_negatives_than_k_counts_every_positive():
    assert hits_at_k(T([-9.0, 0.0]), T([1.0, 2.0]), 3) == 1.0


def test_hits_of_all_tied_scores_is_zero():
    assert hits_at_k(torch.zeros(4), torch.zeros(30), 20) == 0.0


# -- MRR ------------------------------------------------------------------------------------


def test_mrr_by_hand_with_a_tie_counted_half():
    neg = T([5.0, 4.0, 3.0])
    # 6 -> rank 1; 4 -> 1 above, 2 at least as high: rank 1 + 1.5 = 2.5; 0 -> rank 4
    assert mrr(T([6.0, 4.0, 0.0]), neg) == pytest.approx((1 + 1 / 2.5 + 1 / 4) / 3)


def test_mrr_shared_negatives_equal_the_same_negatives_per_positive():
    g = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 6, (50,), generator=g).float()  # integers: many ties
    neg = torch.randint(0, 6, (80,), generator=g).float()
    brute = np.mean([1 / (1 + 0.5 * (int((neg > p).sum()) + int((neg >= p).sum()))) for p in pos.tolist()])
    assert mrr(pos, neg) == pytest.approx(brute)
    assert mrr(pos, neg.expand(50, 80)) == pytest.approx(brute)


def test_mrr_refuses_negatives_of_the_wrong_shape():
    with pytest.raises(ValueError, match="neg_scores"):
        mrr(torch.zeros(3), torch.zeros(2, 5))


def test_ranking_scores_names():
    out = ranking_scores(T([3.0, 1.0]), torch.arange(200).float() / 100)
    assert list(out) == ["hits_at_20", "hits_at_50", "hits_at_100", "mrr"]
    assert out["hits_at_20"] == 0.5 and out["mrr"] == pytest.approx((1 + 1 / 100.5) / 2)


# -- node clustering and the linear probe -----------------------------------------------------


def test_clustering_accuracy_matches_clusters_to_classes():
    labels = [0, 0, 1, 1, 2, 2]
    assert clustering_accuracy(labels, [1, 1, 0, 0, 0, 2]) == pytest.approx(5 / 6)
    # any renaming of the clusters gives the same accuracy
    assert clustering_accuracy(labels, [7, 7, 3, 3, 3, 9]) == pytest.approx(5 / 6)
    assert clustering_accuracy(labels, [0, 1, 2, 0, 1, 2]) == pytest.approx(3 / 6)  # each cluster: one class right


def blobs(seed: int = 0, per: int = 40, spread: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(3) * 5
    y = torch.arange(3).repeat_interleave(per)
    return centres[y] + spread * torch.randn(3 * per, 3, generator=g), y


def test_cluster_scores_are_one_on_a_perfect_clustering_whatever_the_label_names():
    x, y = blobs()
    scores = cluster_scores(x, y, 3, seed=0)
    assert scores == pytest.approx({"cluster_acc": 1.0, "cluster_nmi": 1.0, "cluster_ari": 1.0})
    assert cluster_scores(x, (y + 1) % 3 * 10, seed=0) == pytest.approx(scores)  # k taken from the labels


def test_cluster_scores_are_low_for_labels_unrelated_to_the_embedding():
    x, _ = blobs()
    y = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(1))
    scores = cluster_scores(x, y, 3, seed=0)
    assert scores["cluster_nmi"] < 0.1 and abs(scores["cluster_ari"]) < 0.1 and scores["cluster_acc"] < 0.6


def test_linear_probe_learns_from_the_training_nodes_only():
    x, y = blobs(per=60, spread=0.5)
    train = torch.zeros(180, dtype=torch.bool)
    train[::6] = True
    test = ~train
    assert linear_probe(x, y, train, test) == 1.0
    # test labels that contradict what the training nodes teach: every prediction is wrong
    shifted = y.clone()
    shifted[test] = (y[test] + 1) % 3
    assert linear_probe(x, shifted, train, test) == 0.0


# -- the link task and metrics.json -------------------------------------------------------------

SBM = ["dataset=sbm", "dataset.loader.num_nodes=120", "model=gae", "trainer.epochs=3", "trainer.progress=false"]


def test_final_metrics_of_a_link_run_on_a_labelled_graph(tmp_path, one_thread):
    metrics = run(compose_cfg(*SBM), tmp_path)
    for split in ("val", "test"):
        for name in ("hits_at_20", "hits_at_50", "hits_at_100", "mrr"):
            assert 0.0 <= metrics[f"{split}_{name}"] <= 1.0
    assert {"test_cluster_acc", "test_cluster_nmi", "test_cluster_ari"} <= set(metrics)
    assert "test_probe_acc" not in metrics  # the SBM has labels but no public split
    assert json.loads((tmp_path / "metrics.json").read_text())["test_mrr"] == metrics["test_mrr"]
    # the per-epoch validation stays as it was: AUC and AP only
    assert {k for k in metrics["history"][-1] if k.startswith("val_")} == {"val_auc", "val_ap"}


def test_node_metrics_can_be_switched_off(tmp_path, one_thread):
    metrics = run(compose_cfg(*SBM, "node_metrics=false"), tmp_path)
    assert "test_hits_at_20" in metrics and not any(k.startswith("test_cluster") for k in metrics)


def test_a_graph_without_labels_gets_no_node_metrics():
    data = make_sbm(num_nodes=60, num_blocks=3, p_in=0.5, p_out=0.01, seed=0)
    del data.y
    task = LinkPredictionTask(data, split_seed=0)
    assert task.node_metrics(torch.nn.Identity()) == {}  # never reaches the model


def test_planetoid_keeps_the_public_split(data_root):
    from vgae_toolkit.data.graphs import load_planetoid

    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    data = load_planetoid(data_root, name="cora", download=False)
    assert tuple(data.x.shape) == (2708, 1433) and data.edge_index.size(1) == 10556
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (140, 500, 1000)
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * 7  # 20 per class
    task = LinkPredictionTask(data, split_seed=0)
    assert torch.equal(task.data.test_mask, data.test_mask)


# -- the report -------------------------------------------------------------------------------


def test_report_tabulates_the_new_scores_on_request_only(tmp_path, capsys):
    from vgae_toolkit.report import main

    for seed, (hits, acc) in enumerate([(0.5, 0.6), (0.7, 0.8)]):
        run_dir = tmp_path / f"g{seed}"
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text(json.dumps({
            "status": "complete", "model": "gae", "dataset": "cora", "features": True, "seed": seed,
            "test_auc": 0.9, "test_ap": 0.9, "test_hits_at_20": hits, "test_cluster_acc": acc, "wall_seconds": 1.0}))
    main([str(tmp_path)])
    default = capsys.readouterr().out
    assert "cora AUC" in default and "HITS" not in default and "CLUSTER" not in default  # Table 1's layout
    main([str(tmp_path), "--metrics", "hits_at_20,cluster_acc,probe_acc", "--out", str(tmp_path / "t")])
    table = capsys.readouterr().out
    assert "60.0 ± 10.0" in table and "70.0 ± 10.0" in table  # hits and ACC x100, mean ± se
    rows = pd.read_csv(tmp_path / "t.csv").set_index("metric")
    assert rows.loc["hits_at_20", "n"] == 2 and rows.loc["probe_acc", "n"] == 0


def test_linear_probe_does_not_depend_on_the_basis_of_the_embedding():
    x, y = blobs(per=60, spread=2.0)
    x = torch.cat([x, torch.randn(180, 5, generator=torch.Generator().manual_seed(2))], dim=1)  # [180, 8]
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(3)))
    train = torch.zeros(180, dtype=torch.bool)
    train[::4] = True
    accuracy = linear_probe(x, y, train, ~train)
    assert 0.5 < accuracy < 1.0  # not trivially separable: the rotation could change it
    assert linear_probe(x @ rotation, y, train, ~train) == pytest.approx(accuracy, abs=1e-9)
