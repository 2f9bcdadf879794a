"""Devices and several processes: device names, each process's share of the loss, a torchrun launch."""
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.data.images import ImageBatches
from vgae_toolkit.distributed import command_line, resolve_device, share, worker_overrides
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.graph import GraphAutoEncoder, GraphBatch
from vgae_toolkit.run import run
from vgae_toolkit.splits import NegativeSampler, split_edges
from vgae_toolkit.tasks.link import normalized_adjacency

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = torch.cuda.is_available()


# -- trainer.device ----------------------------------------------------------------------------
def test_auto_picks_cuda_only_where_there_is_one():
    expected = torch.device("cuda", torch.cuda.current_device()) if CUDA else torch.device("cpu")
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == resolve_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_a_bad_device_names_the_key(bad):
    with pytest.raises(ConfigError, match="trainer.device: expected auto, cpu, cuda or cuda:N"):
        resolve_device(bad)


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_config_error(tmp_path):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"trainer.device={name}: CUDA is not available"):
            resolve_device(name)
    with pytest.raises(ConfigError, match="trainer.device"):  # before anything is written
        run(compose_cfg("dataset=karate", "trainer.device=cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cpu_run_records_its_device(tmp_path):
    metrics = run(compose_cfg("dataset=karate", "trainer.epochs=3", "trainer.progress=false", "trainer.device=cpu"),
                  tmp_path)
    assert metrics["device"] == "cpu" and metrics["processes"] == 1


def test_only_rank_0_lets_hydra_create_the_run_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    for rank, expect_scratch in (("0", False), ("1", True)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        argv = ["vgae_toolkit", "dataset=karate"]
        with command_line(argv):
            scratch = list(tmp_path.glob("vgae_toolkit_rank*"))
            assert len(scratch) == int(expect_scratch)
            assert argv[2:] == (worker_overrides(str(scratch[0])) if expect_scratch else [])
        assert not list(tmp_path.glob("vgae_toolkit_rank*"))  # removed at exit


# -- each process's share ----------------------------------------------------------------------
@pytest.mark.parametrize("count,world", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shares_cover_every_index_once(count, world):
    parts = [list(range(count))[share(count, r, world)] for r in range(world)]
    assert sum(parts, []) == list(range(count))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def sbm_batch(num_nodes=600, seed=0):
    from vgae_toolkit.data.graphs import make_sbm

    data = make_sbm(num_nodes=num_nodes, seed=seed)
    split = split_edges(data.edge_index, data.num_nodes, seed=seed)
    batch = GraphBatch(x=data.x, adj=normalized_adjacency(split.train_edge_index, data.num_nodes), pos=split.train_pos)
    sampler = NegativeSampler(split.train_pos, data.num_nodes, torch.Generator().manual_seed(seed))
    return data, batch, sampler


def loss_and_grads(model, batch, seed):
    torch.manual_seed(seed)  # the same z noise in every process, as the same seed gives them
    model.zero_grad()
    out = model.loss(batch)
    out["loss"].backward()
    return {k: v.detach() for k, v in out.items()}, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("recon", ["dense", "sampled"])
@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_shares_of_the_graph_loss_average_to_the_whole(recon, variational, world):
    data, batch, sampler = sbm_batch()
    torch.manual_seed(0)
    # hidden/latent small, blocks of 256 rows: 600 nodes make three blocks, unequal in work
    model = GraphAutoEncoder(in_channels=data.x.size(1), num_nodes=data.num_nodes, hidden=8, latent=4,
                             variational=variational, recon=recon, neg_ratio=2)
    batch.neg = sampler(2 * batch.pos.size(1))
    whole, whole_grads = loss_and_grads(model, batch, seed=1)
    parts = [loss_and_grads(model, GraphBatch(batch.x, batch.adj, batch.pos, batch.neg, part=(r, world)), seed=1)
             for r in range(world)]
    for key, value in whole.items():
        mean = torch.stack([terms[key] for terms, _ in parts]).mean()
        assert torch.allclose(mean, value, rtol=1e-5, atol=1e-7), key
    for i, grad in enumerate(whole_grads):
        mean = torch.stack([grads[i] for _, grads in parts]).mean(0)
        assert (mean - grad).abs().max() <= 1e-5 * grad.abs().max()  # float32 rounding: about 1e-6


@pytest.mark.parametrize("n,batch_size", [(40, 10), (37, 10), (9, 4)])
def test_image_shares_make_up_the_batches_of_one_process(n, batch_size):
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1) / n
    one = [b["x"].reshape(-1) for b in ImageBatches(x, batch_size=batch_size, seed=3)]
    two = [ImageBatches(x, batch_size=batch_size, seed=3, rank=r, world_size=2) for r in range(2)]
    assert len(two[0]) == len(two[1])  # every process takes the same number of steps
    steps = list(zip(*two))
    assert len(steps) == len(one)
    for single, parts in zip(one, steps):
        together = torch.cat([p["x"].reshape(-1) for p in parts])
        assert parts[0]["x"].size(0) == parts[1]["x"].size(0)  # equal shares: the mean of means is the mean
        # step i of the two processes holds the images of step i of one process (plus, in the last step of
        # an uneven split, repeats of the first images, as DistributedSampler pads)
        assert set(single.tolist()) <= set(together.tolist())
        assert set(together.tolist()) - set(single.tolist()) <= set(one[0].tolist())


def test_image_shares_differ_between_processes_and_epochs():
    x = torch.rand(50, 6)
    a, b = (ImageBatches(x, batch_size=10, binarize="dynamic", seed=0, rank=r, world_size=2) for r in range(2))
    first_a, first_b = next(iter(a)), next(iter(b))
    assert first_a["x"].shape == (5, 6) and not torch.equal(first_a["x"], first_b["x"])
    assert not torch.equal(first_a["x"], next(iter(a))["x"])  # the next epoch


# -- torchrun ------------------------------------------------------------------------------------
SMALL = ["dataset=sbm", "dataset.loader.num_nodes=300", "trainer.epochs=12", "trainer.progress=false",
         "trainer.device=cpu"]


def launch(tmp_path, nproc, *overrides):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "vgae_toolkit", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["model=gae", "model=vgae model.recon=sampled"], ids=["gae-dense", "vgae-sampled"])
def test_two_processes_train_as_one(tmp_path, model):
    overrides = [*SMALL, *model.split(" ")]
    single = run(compose_cfg(*overrides), tmp_path / "single")
    proc = launch(tmp_path, 2, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()  # one run directory, rank 0's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "single", "tmp"]  # nothing else written
    assert not list((tmp_path / "tmp").glob("vgae_toolkit_rank*"))  # the other rank's scratch folder is gone
    assert {"metrics.json", "last.pt", "curves.png", ".hydra", "__main__.log"} <= {p.name for p in run_dir.iterdir()}
    both = json.loads((run_dir / "metrics.json").read_text())
    assert both["processes"] == 2 and both["device"] == "cpu" and both["status"] == "complete"
    for key in ("test_auc", "test_ap", "val_auc", "val_ap"):
        assert abs(both[key] - single[key]) < 1e-3, (key, both[key], single[key])
    assert len(both["history"]) == len(single["history"]) == 12
    for one, two in zip(single["history"], both["history"]):
        assert one["train_loss"] == pytest.approx(two["train_loss"], rel=1e-4)
    state = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(t.device.type == "cpu" for t in state.values())


@pytest.mark.slow
def test_two_processes_train_a_vae(tmp_path):
    overrides = ["model=vae", "dataset=digits", "trainer.epochs=3", "trainer.progress=false", "trainer.lr=1e-3",
                 "dataset.batch_size=64", "dataset.iw_samples=0", "model.hidden=[64]", "model.latent_dim=4"]
    single = run(compose_cfg(*overrides), tmp_path / "single")
    proc = launch(tmp_path, 2, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    both = json.loads((run_dir / "metrics.json").read_text())
    assert both["processes"] == 2
    # the same batches, other z noise: close, not equal
    assert abs(both["test_elbo"] - single["test_elbo"]) < 0.05 * abs(single["test_elbo"])
    assert [h["samples_seen"] for h in both["history"]] == [h["samples_seen"] for h in single["history"]]
