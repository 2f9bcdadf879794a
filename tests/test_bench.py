"""The benchmark script: its arithmetic, its report and a tiny end-to-end run (no timing is asserted)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import require_files
from vgae_toolkit.data import images as images_module
from vgae_toolkit.data.images import ImageData

# The benchmark is a script outside the installed package: loaded from its file.
_spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_growth_exponent_recovers_a_power_law():
    edges = [1e4, 1e5, 1e6]
    assert bench.growth_exponent(edges, [3 * e ** 1.0 for e in edges]) == pytest.approx(1.0)
    assert bench.growth_exponent(edges, [0.5 * e ** 1.5 for e in edges]) == pytest.approx(1.5)


def test_scaling_epochs_grow_as_the_graph_shrinks():
    assert bench.scaling_epochs(1_000_000, 1_000_000, 10) == 10
    assert bench.scaling_epochs(300_000, 1_000_000, 10) == 33
    assert bench.scaling_epochs(10_000, 1_000_000, 10) == 1000
    assert bench.scaling_epochs(1_000, 1_000_000, 10) == 1000  # capped
    assert bench.scaling_epochs(900_000, 1_000_000, 10) == 11


def test_median_leaves_out_the_warm_up_epochs():
    seconds = [9.0] * bench.WARMUP + [0.001, 0.002, 0.003] * 3
    assert bench.median_ms(seconds) == pytest.approx(2.0)


def test_timed_epochs_alternate_blocks_and_the_last_block_is_flushed():
    order = []
    callback, ours, theirs, flush = bench.timed_epochs(lambda: order.append("ref") or 0.5, block=3)
    for epoch in range(1, 8):  # seven epochs of ours: two blocks of three, then one left over
        order.append("ours")
        callback(epoch, {}, None)
    flush()
    assert order == ["ours"] * 3 + ["ref"] * 3 + ["ours"] * 3 + ["ref"] * 3 + ["ours", "ref"]
    assert len(ours) == 7 and theirs == [0.5] * 7
    flush()  # nothing left: no extra reference epoch
    assert len(theirs) == 7


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--sections", "link,speed"])
    assert "unknown ['speed']" in capsys.readouterr().err


def test_scaling_section_end_to_end(tmp_path):
    out = tmp_path / "bench.md"
    bench.main(["--sections", "scaling", "--scaling-sizes", "2000,4000", "--scaling-epochs", "2", "--threads", "1",
                "--out", str(out)])
    report = out.read_text()
    assert "| 2,000 |" in report and "| 4,000 |" in report and "Growth exponent" in report
    rows = json.loads(out.with_suffix(".json").read_text())["scaling"]
    assert [r["num_nodes"] for r in rows] == [2000, 4000]
    assert [r["epochs"] for r in rows] == [4, 2]  # the smaller graph runs proportionally more epochs
    assert 15_000 < rows[1]["num_edges"] < 25_000  # average degree about 10
    assert all(r["peak_rss_mb"] > 0 and r["train_ms"] > 0 for r in rows)


def test_link_section_on_cora(tmp_path, data_root):
    require_files(data_root, "Planetoid/Cora/raw")
    out = tmp_path / "bench.md"
    bench.main(["--sections", "link", "--link-datasets", "cora", "--link-epochs", "40", "--link-seeds", "2",
                "--threads", "1", "--data-dir", str(data_root), "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["link"]
    assert [(r["dataset"], r["model"]) for r in rows] == [("cora", "GAE"), ("cora", "VGAE")]
    for r in rows:
        # Both sides learn: untrained encoders score 0.68-0.72 test AUC on these splits, both sides
        # 0.85-0.91 after 40 epochs; training the same model, they end within 0.02 of each other.
        tests = r["per_seed_test"]
        assert min(tests["ours_auc"] + tests["ref_auc"]) > 0.80, tests
        assert abs(r["ours_test_auc"] - r["ref_test_auc"]) < 0.04, tests
        assert r["ours_train_ms"] > 0 and r["ref_train_ms"] > 0
        per_seed = r["per_seed_test"]["ours_auc"]
        assert r["seeds"] == [0, 1] and len(per_seed) == 2 and per_seed[0] != per_seed[1]  # two splits
        assert r["ours_test_auc"] == pytest.approx(sum(per_seed) / 2)
    assert "speed-up" in out.read_text() and str(data_root) not in out.read_text()  # no machine path


def test_paired_difference_by_hand():
    per_seed = {"ours_auc": [0.90, 0.88, 0.92], "ref_auc": [0.89, 0.89, 0.90]}
    # differences 1, -1, 2 points: mean 0.67, sd 1.53, s.e. 0.88
    assert bench.paired_difference(per_seed, "auc") == "+0.67 ± 0.88"
    assert bench.paired_difference({"ours_auc": [0.9], "ref_auc": [0.8]}, "auc") == "-"
    assert bench.paired_difference(None, "auc") == "-"


def test_elbo_difference_by_hand():
    per_seed = {"ours_test_elbo": [-100.0, -101.0, -99.0], "ref_test_elbo": [-100.5, -100.0, -99.0]}
    # differences 0.5, -1, 0 nats: mean -0.17, sd 0.76, s.e. 0.44
    assert bench.elbo_difference(per_seed, "ref") == "-0.17 ± 0.44"
    assert bench.elbo_difference({"ours_test_elbo": [-1.0], "ref_test_elbo": [-2.0]}, "ref") == "-"


def test_mnist_items_are_the_tensors_torchvision_would_give():
    import torch

    x = torch.randint(0, 256, (4, 784), dtype=torch.uint8).float() / 255
    items = bench.MNISTItems(x, torch.tensor([3, 1, 4, 1]))
    image, label = items[2]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == 4
    assert torch.equal(image.view(784), x[2])
    assert len(items) == 4


def test_vae_report_gives_both_reference_loops():
    vae = {"epochs": 3, "train_images": 60000, "seeds": [0, 1],
           "ours_samples_per_s": 12000.0, "ref_samples_per_s": 8000.0, "ref_items_samples_per_s": 4000.0,
           "ours_test_elbo": -112.0, "ref_test_elbo": -112.5, "ref_items_test_elbo": -111.5,
           "per_seed": {"ours_test_elbo": [-112.0, -112.0], "ref_test_elbo": [-112.5, -112.5],
                        "ref_items_test_elbo": [-111.0, -112.0]}}
    report = bench.render({"vae": vae}, "python benchmarks/bench.py --sections vae", 60.0)
    assert "| reference, in-memory tensor batches | 8000 | 1.50x | -112.50 | +0.50 ± 0.00 |" in report
    assert "| 4000 | 3.00x | -111.50 | -0.50 ± 0.50 |" in report
    assert "bit-identical" not in report  # no check recorded, nothing claimed


def test_vae_report_says_whether_the_reference_loops_agreed():
    vae = {"epochs": 1, "train_images": 10, "seeds": [0], "ours_samples_per_s": 2.0, "ref_samples_per_s": 1.0,
           "ours_test_elbo": -1.0, "ref_test_elbo": -1.0, "per_seed": {}}
    assert "bit-identical weights" in bench.render({"vae": {**vae, "refs_identical": True}}, "c", 1.0)
    assert "**their weights differed**" in bench.render({"vae": {**vae, "refs_identical": False}}, "c", 1.0)


def test_vae_section_end_to_end_on_small_images(monkeypatch):
    # 300 MNIST-shaped images with intensities k/255, as the IDX files give them
    gen = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 784), generator=gen).float().div(255)  # noqa: E731
    small = ImageData(train_x=images(300), train_y=torch.randint(0, 10, (300,), generator=gen),
                      test_x=images(100), test_y=torch.randint(0, 10, (100,), generator=gen),
                      shape=(28, 28), name="mnist", num_classes=10)
    monkeypatch.setattr(images_module, "load_mnist", lambda root: small)
    row = bench.bench_vae("unused", epochs=bench.WARMUP + 1, seeds=[0, 1])
    # the example's data path and in-memory batches: same batches and noise, so the same weights and ELBO
    assert row["refs_identical"] is True
    assert row["per_seed"]["ref_test_elbo"] == row["per_seed"]["ref_items_test_elbo"]
    # Bernoulli targets x in [0, 1]: -log p(x|z) >= sum_i H(x_i) (cross-entropy >= entropy), so the ELBO
    # is at most -sum_i H(x_i); a decoder no better than p = 1/2 gives at best -784 log 2 plus the KL.
    x = small.test_x.double().clamp(1e-12, 1 - 1e-12)
    entropy = float(-(x * x.log() + (1 - x) * (1 - x).log()).sum(dim=1).mean())
    for value in row["per_seed"]["ours_test_elbo"] + row["per_seed"]["ref_test_elbo"]:
        assert -784 * math.log(2) - 5 < value < -entropy, (value, entropy)
    assert len(row["per_seed"]["ours_test_elbo"]) == 2
    assert row["ours_samples_per_s"] > 0 and row["ref_items_samples_per_s"] > 0


def test_gat_section_on_a_small_graph():
    from vgae_toolkit.data.graphs import make_sbm

    # 0/1 features, 7% non-zero (our first GAT layer projects them as a sparse product), noisy enough
    # that the initial weights score well under the trained ones
    graph = make_sbm(num_nodes=300, num_blocks=6, p_in=0.15, p_out=0.002, num_features=48, feature_noise=3.0, seed=0)
    graph.x = (graph.x > 4.5).float()
    assert 0.01 < float(graph.x.mean()) < 0.25
    torch.set_num_threads(1)
    rows = bench.bench_gat("unused", ["sbm"], epochs=30, seeds=[0, 1], data=graph)
    (row,) = rows
    assert row["dataset"] == "sbm" and row["model"] == "GAE (GAT)" and row["epochs"] == 30 and row["seeds"] == [0, 1]
    tests = row["per_seed_test"]
    assert all(len(tests[k]) == 2 for k in ("ours_auc", "ours_ap", "ref_auc", "ref_ap", "init_auc"))
    # Both sides learn: the shared initial weights score 0.68-0.70 test AUC on these splits, both sides
    # 0.86-0.90 after 30 epochs; training the same layers, they end within 0.05 of each other.
    assert min(tests["ours_auc"] + tests["ref_auc"]) > max(tests["init_auc"]) + 0.1, tests
    assert abs(row["ours_test_auc"] - row["ref_test_auc"]) < 0.05, tests
    assert row["ours_test_auc"] == pytest.approx(sum(tests["ours_auc"]) / 2)
    assert row["ours_train_ms"] > 0 and row["ref_train_ms"] > 0
    report = bench.render({"gat": rows}, "python benchmarks/bench.py --sections gat", 1.0)
    assert "## GAE with a GAT encoder" in report and "| sbm | GAE (GAT) | 30 |" in report
