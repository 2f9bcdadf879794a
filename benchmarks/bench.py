"""Speed and memory against the reference loops, measured side by side in one run.

    python benchmarks/bench.py [--sections link,gat,featureless,vae,scaling] [--out experiments/bench/results.md]

Sections (``make bench`` runs them all; the data root is ``--data-dir`` or ``VGAE_TOOLKIT_DATA``):

``link``
    GAE and VGAE on Cora and PubMed, our training epoch and evaluation against a loop written the
    way PyG's ``examples/autoencoder.py`` is: ``torch_geometric.nn.GAE``/``VGAE`` over ``GCNConv``,
    ``recon_loss`` with ``negative_sampling`` at every step, scikit-learn AUC/AP for evaluation.
    Both sides get the same split, features, seed and epoch count and train in alternating blocks of
    ``BLOCK`` epochs (ten of ours, ten of the reference, ...), so the machine's noise hits both alike
    while each side's epochs follow one another as in a training run. Ours uses the same loss as the
    reference (``recon=sampled``, one negative per edge).
``gat``
    A GAE whose encoder is two ``GATConv`` layers (4 heads, ELU: ``conf/model/encoder/gat.yaml``) on
    both sides: ours through ``LinkPredictionTask`` and ``Trainer`` (``encoder=gat``), the reference
    the same example loop over the same layers from the same initial weights.
``maskgae``
    MaskGAE (path masking) on Cora and PubMed, ours against a loop written as its authors'
    link-prediction script over PyG layers (``benchmarks/bench_maskgae.py``), alternating blocks of epochs
    from the same initial weights, validation AUC/AP after the same epochs.
``featureless``
    PubMed without features (GAE*): our learnable first layer against the dense N x N identity input
    of the original code. Each side runs in a child process, so that its peak RSS is its own.
``vae``
    The VAE on MNIST (784-400-20, batch 128, Adam 1e-3, intensities as Bernoulli targets): our
    trainer against a loop written as pytorch/examples' ``vae/main.py`` is (``binary_cross_entropy`` on
    sigmoid outputs), fed once by the example's own data path (a PIL image per item through a
    ``DataLoader``, as torchvision's MNIST does) and once by in-memory tensor batches (the training step
    alone); samples per second and test ELBO.
``iw``
    The importance-weighted log p(x) (K = 5000) of that VAE on MNIST test images: ours against the
    straightforward loop the toolkit ran before (``benchmarks/bench_iw.py``), the same draws on both
    sides; wall and CPU time, the full test set's time extrapolated, and the difference in nats.
``scaling``
    Synthetic SBM graphs from 10k to 1M nodes (average degree 10), one child process per size: ms
    per training epoch, peak RSS, and the growth exponent of the epoch time against the edge count.

Timings are medians over epochs after a warm-up; ratios are reference / ours, so more is faster.
No timing is asserted anywhere in the test suite: this script is where speed is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from vgae_toolkit.process import enable_huge_pages, huge_pages_enabled

enable_huge_pages()  # before torch is first imported (run as a script; vgae_toolkit/process.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SECTIONS = ("link", "gat", "maskgae", "featureless", "vae", "iw", "scaling")
WARMUP = 3  # epochs left out of every median


# -- helpers -----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` survives ``exec``, so a child process
    would report its parent's peak at the fork when that was higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def median_ms(seconds: list[float]) -> float:
    kept = seconds[WARMUP:] if len(seconds) > 2 * WARMUP else seconds
    return 1000 * statistics.median(kept)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{os.cpu_count()} cores ({cpu}){gpu}, {platform.system()} {platform.machine()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
            f"huge pages {'on' if huge_pages_enabled() else 'off'} (THP_MEM_ALLOC_ENABLE)")


BLOCK = 10  # epochs each side runs in a row before the other side's turn (timed_epochs)


def timed_epochs(interleave=None, block: int = 1):
    """Trainer callbacks that time each of our epochs and, after every ``block`` of them, run
    ``interleave()`` ``block`` times (the reference's epochs); a last, shorter block is run by ``flush()``.

    Returns ``(callback, ours, theirs, flush)``: the callback, two lists of seconds per epoch, and
    ``flush`` to call after the fit. Blocks rather than single epochs in turn: a training run's epochs
    follow one another, and with single epochs alternating each side starts every epoch with the other
    side's tensors in the cache, a cost no training run pays and that weighs most on the shorter epoch.
    """
    ours: list[float] = []
    theirs: list[float] = []
    last = [time.perf_counter()]
    pending = [0]

    def flush():
        for _ in range(pending[0]):
            theirs.append(interleave())
        pending[0] = 0

    def callback(epoch, record, model):
        ours.append(time.perf_counter() - last[0])
        if interleave is not None:
            pending[0] += 1
            if pending[0] >= block:
                flush()
        last[0] = time.perf_counter()

    return callback, ours, theirs, flush


# -- the reference loops (written as the examples the toolkit is compared with) ---------------
class _RefEncoder(nn.Module):
    """PyG examples/autoencoder.py: GCNConv(F, 2 * latent) -> ReLU -> GCNConv (mu, and logstd for VGAE)."""

    def __init__(self, in_channels: int, latent: int, variational: bool) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.variational = variational
        self.conv1 = GCNConv(in_channels, 2 * latent)
        self.conv_mu = GCNConv(2 * latent, latent)
        self.conv_logstd = GCNConv(2 * latent, latent) if variational else None

    def forward(self, x, edge_index):
        h = self.conv1(x, edge_index).relu()
        if self.variational:
            return self.conv_mu(h, edge_index), self.conv_logstd(h, edge_index)
        return self.conv_mu(h, edge_index)


class _RefGATEncoder(nn.Module):
    """Two ``GATConv`` layers as a PyG user writes them: ``heads`` heads of ``hidden // heads`` channels
    (concatenated) -> ELU -> one head to ``latent`` (GAE); every call adds the self-loops itself."""

    def __init__(self, in_channels: int, hidden: int, latent: int, heads: int) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(in_channels, hidden // heads, heads=heads)
        self.conv2 = GATConv(hidden, latent)

    def forward(self, x, edge_index):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


class ReferenceLinkLoop:
    """One epoch = encode, ``recon_loss`` (fresh ``negative_sampling``), KL / N for VGAE, Adam step.

    ``encoder`` replaces the example's GCN encoder (GAE only: one output, the latent codes).
    """

    def __init__(self, x, train_edge_index, train_pos, num_nodes: int, variational: bool, lr: float = 0.01,
                 encoder: nn.Module | None = None) -> None:
        from torch_geometric.nn import GAE, VGAE

        encoder = _RefEncoder(x.size(1), 16, variational) if encoder is None else encoder
        self.model = VGAE(encoder) if variational else GAE(encoder)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.x, self.edge_index, self.pos, self.num_nodes = x, train_edge_index, train_pos, num_nodes
        self.variational = variational

    def train_epoch(self) -> float:
        start = time.perf_counter()
        self.model.train()
        self.opt.zero_grad()
        z = self.model.encode(self.x, self.edge_index)
        loss = self.model.recon_loss(z, self.pos)
        if self.variational:
            loss = loss + (1 / self.num_nodes) * self.model.kl_loss()
        loss.backward()
        self.opt.step()
        float(loss.detach())
        return time.perf_counter() - start

    @torch.no_grad()
    def test(self, pos, neg) -> tuple[float, float]:
        self.model.eval()
        z = self.model.encode(self.x, self.edge_index)
        return self.model.test(z, pos, neg)  # scikit-learn roc_auc_score / average_precision_score


class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py: 784-400-20, ReLU, sigmoid output, summed BCE + KL."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    @staticmethod
    def loss(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def record_tests(tests: dict[str, list[float]], task, ours, ref) -> None:
    """Appends both sides' test AUC/AP on the task's test pairs to ``tests``."""
    test = task.evaluate(ours, "test")
    ref_auc, ref_ap = ref.test(task.split.test_pos, task.split.test_neg)
    tests["ours_auc"].append(test["test_auc"])
    tests["ours_ap"].append(test["test_ap"])
    tests["ref_auc"].append(float(ref_auc))
    tests["ref_ap"].append(float(ref_ap))


# -- section 1: link prediction ------------------------------------------------------------------
def bench_link(data_root: str, datasets: list[str], epochs: int, seeds: list[int]) -> list[dict]:
    """Every dataset and model trains once per seed on both sides (alternating blocks of epochs, the seed's split).

    Times are medians over the epochs of all seeds (evaluation: 10 repeats after each fit); test AUC/AP
    are means over the seeds, since one split moves them by about a point either way.
    """
    from vgae_toolkit.data.graphs import load_planetoid
    from vgae_toolkit.models.graph import GraphAutoEncoder
    from vgae_toolkit.tasks.link import LinkPredictionTask
    from vgae_toolkit.trainer import Trainer

    rows = []
    for name in datasets:
        data = load_planetoid(data_root, name=name, download=False)
        for variational in (False, True):
            times: dict[str, list[float]] = {"ours": [], "ref": [], "ours_eval": [], "ref_eval": []}
            tests: dict[str, list[float]] = {"ours_auc": [], "ours_ap": [], "ref_auc": [], "ref_ap": []}
            for seed in seeds:
                task = LinkPredictionTask(data, split_seed=seed, sampler_seed=seed)
                split = task.split
                torch.manual_seed(seed)
                # the reference's model: GCN layers with biases (as GCNConv), the same loss and negatives ratio
                ours = GraphAutoEncoder(**task.model_kwargs(), variational=variational, recon="sampled", bias=True)
                torch.manual_seed(seed)
                ref = ReferenceLinkLoop(data.x, split.train_edge_index, split.train_pos, data.num_nodes, variational)
                callback, ours_s, ref_s, flush = timed_epochs(ref.train_epoch, BLOCK)
                Trainer(epochs=epochs, lr=0.01, progress=False, callbacks=[callback]).fit(ours, task.train_batches(ours))
                flush()
                for key, seconds in (("ours", ours_s), ("ref", ref_s)):
                    times[key] += seconds[WARMUP:] if len(seconds) > 2 * WARMUP else seconds
                for repeat in range(10 + WARMUP):
                    start = time.perf_counter()
                    task.evaluate(ours, "val")
                    middle = time.perf_counter()
                    ref.test(split.val_pos, split.val_neg)
                    if repeat >= WARMUP:
                        times["ours_eval"].append(middle - start)
                        times["ref_eval"].append(time.perf_counter() - middle)
                record_tests(tests, task, ours, ref)
            row = {"dataset": name, "model": "VGAE" if variational else "GAE", "epochs": epochs, "seeds": list(seeds),
                   **{f"{k}_train_ms": 1000 * statistics.median(times[k]) for k in ("ours", "ref")},
                   **{f"{k}_eval_ms": 1000 * statistics.median(times[f"{k}_eval"]) for k in ("ours", "ref")},
                   **{f"{side}_test_{m}": statistics.mean(tests[f"{side}_{m}"]) for side in ("ours", "ref")
                      for m in ("auc", "ap")},
                   "per_seed_test": tests}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# -- section 1b: a GAT encoder ---------------------------------------------------------------------
GAT = {"name": "gat", "heads": 4, "activation": "elu"}  # conf/model/encoder/gat.yaml: 4 heads, ELU
GAT_HIDDEN, GAT_LATENT = 32, 16


def bench_gat(data_root: str, datasets: list[str], epochs: int, seeds: list[int], data=None) -> list[dict]:
    """A GAE with a two-layer ``GATConv`` encoder, ours against the example's loop over the same layers.

    Ours: ``GraphAutoEncoder(encoder=GAT, recon="sampled")`` through ``LinkPredictionTask`` and
    ``Trainer``, as the link section runs the GCN. Reference: ``ReferenceLinkLoop`` with
    :class:`_RefGATEncoder`, which starts from our encoder's initial weights (the parameters have the
    same names and shapes). Lockstep epochs, the seed's split; times and means as in :func:`bench_link`;
    ``per_seed_test["init_auc"]`` is the test AUC of the initial weights (both sides start there).
    ``data`` (a graph) replaces the Planetoid datasets (the tests' small graphs).
    """
    from vgae_toolkit.data.graphs import load_planetoid
    from vgae_toolkit.models.graph import GraphAutoEncoder
    from vgae_toolkit.tasks.link import LinkPredictionTask
    from vgae_toolkit.trainer import Trainer

    rows = []
    for name in datasets:
        graph = data if data is not None else load_planetoid(data_root, name=name, download=False)
        times: dict[str, list[float]] = {"ours": [], "ref": []}
        tests: dict[str, list[float]] = {"ours_auc": [], "ours_ap": [], "ref_auc": [], "ref_ap": [], "init_auc": []}
        for seed in seeds:
            task = LinkPredictionTask(graph, split_seed=seed, sampler_seed=seed)
            split = task.split
            torch.manual_seed(seed)
            ours = GraphAutoEncoder(**task.model_kwargs(), hidden=GAT_HIDDEN, latent=GAT_LATENT, variational=False,
                                    recon="sampled", encoder=dict(GAT))
            encoder = _RefGATEncoder(graph.x.size(1), GAT_HIDDEN, GAT_LATENT, GAT["heads"])
            for mine, theirs in zip(ours.encoder.convs, (encoder.conv1, encoder.conv2)):
                theirs.load_state_dict(mine.state_dict())  # the same initial weights
            torch.manual_seed(seed)
            ref = ReferenceLinkLoop(graph.x, split.train_edge_index, split.train_pos, graph.num_nodes, False,
                                    encoder=encoder)
            tests["init_auc"].append(task.evaluate(ours, "test")["test_auc"])  # both sides before training
            callback, ours_s, ref_s, flush = timed_epochs(ref.train_epoch, BLOCK)
            trainer = Trainer(epochs=epochs, lr=0.01, progress=False, callbacks=[callback])
            trainer.fit(ours, task.train_batches(ours))
            flush()
            for key, seconds in (("ours", ours_s), ("ref", ref_s)):
                times[key] += seconds[WARMUP:] if len(seconds) > 2 * WARMUP else seconds
            record_tests(tests, task, ours, ref)
        row = {"dataset": name, "model": "GAE (GAT)", "epochs": epochs, "seeds": list(seeds),
               **{f"{k}_train_ms": 1000 * statistics.median(times[k]) for k in ("ours", "ref")},
               **{f"{side}_test_{m}": statistics.mean(tests[f"{side}_{m}"]) for side in ("ours", "ref")
                  for m in ("auc", "ap")},
               "per_seed_test": tests}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- section 2: featureless PubMed (child processes) ---------------------------------------------
def child_featureless(data_root: str, side: str, epochs: int, seed: int) -> dict:
    from vgae_toolkit.data.graphs import load_planetoid
    from vgae_toolkit.models.graph import GraphAutoEncoder
    from vgae_toolkit.tasks.link import LinkPredictionTask
    from vgae_toolkit.trainer import Trainer

    data = load_planetoid(data_root, name="pubmed", download=False)
    task = LinkPredictionTask(data, features=False, split_seed=seed, sampler_seed=seed)
    data.x = None  # neither side reads the features
    torch.manual_seed(seed)
    if side == "ours":
        model = GraphAutoEncoder(**task.model_kwargs(), variational=False, recon="sampled", bias=False)
        callback, seconds, _, _ = timed_epochs()
        Trainer(epochs=epochs, progress=False, callbacks=[callback]).fit(model, task.train_batches(model))
        test = task.evaluate(model, "test")
        auc, ap = test["test_auc"], test["test_ap"]
    else:  # the original code's input: a dense N x N identity
        eye = torch.eye(data.num_nodes)
        ref = ReferenceLinkLoop(eye, task.split.train_edge_index, task.split.train_pos, data.num_nodes, False)
        seconds = [ref.train_epoch() for _ in range(epochs)]
        auc, ap = ref.test(task.split.test_pos, task.split.test_neg)
    return {"side": side, "epochs": epochs, "train_ms": median_ms(seconds), "peak_rss_mb": peak_rss_mb(),
            "test_auc": float(auc), "test_ap": float(ap)}


class MNISTItems(torch.utils.data.Dataset):
    """MNIST served one image at a time as torchvision's ``datasets.MNIST`` with ``transforms.ToTensor()`` does.

    pytorch/examples' ``vae/main.py`` reads its batches this way: a PIL image per item, converted to a
    ``[1, 28, 28]`` float tensor and collated by the ``DataLoader``. Written out with PIL and numpy (the same
    steps as torchvision's ``MNIST.__getitem__`` and ``to_tensor``), because the toolkit does not need
    torchvision.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from PIL import Image  # imported here, not in the timed __getitem__

        self.images = (x * 255).round().to(torch.uint8).view(-1, 28, 28)  # the IDX file's bytes again
        self.targets = y
        self.fromarray = Image.fromarray

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img = self.fromarray(self.images[index].numpy(), mode="L")
        tensor = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1).contiguous()
        return tensor.to(torch.float32).div(255), int(self.targets[index])


# -- section 3: VAE on MNIST -----------------------------------------------------------------------
def bench_vae(data_root: str, epochs: int, seeds: list[int]) -> dict:
    """Ours against two reference loops trained in lockstep from the same initialisation, once per seed.

    ``ref``: pytorch/examples' loop over in-memory tensor batches (its compute alone);
    ``ref_items``: the same loop with the example's own data path (:class:`MNISTItems`). The two draw the
    same noise (the RNG state is restored between them), so they train to the same weights: one ELBO,
    two costs (``refs_identical`` records the check).
    Throughputs are over the median epoch of all seeds; test ELBOs are means, per seed in ``per_seed``.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from vgae_toolkit.data.images import load_mnist
    from vgae_toolkit.models.vae import VAE
    from vgae_toolkit.tasks.image import ImageDensityTask
    from vgae_toolkit.trainer import Trainer

    data = load_mnist(data_root)
    sides = ("ours", "ref", "ref_items")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    per_seed: dict[str, list[float]] = {f"{side}_test_elbo": [] for side in sides}
    same_weights: list[bool] = []
    for seed in seeds:
        task = ImageDensityTask(data, batch_size=128, binarize="none", val_size=0, iw_samples=0, batch_seed=seed)
        torch.manual_seed(seed)
        ours = VAE(**task.model_kwargs(), latent_dim=20, hidden=[400], activation="relu", decoder="bernoulli")
        labels = task.train_y if task.train_y is not None else torch.zeros(len(task.train_x), dtype=torch.long)
        loaders = {"ref": DataLoader(TensorDataset(task.train_x), batch_size=128, shuffle=True,
                                     generator=torch.Generator().manual_seed(seed)),
                   "ref_items": DataLoader(MNISTItems(task.train_x, labels), batch_size=128, shuffle=True,
                                           generator=torch.Generator().manual_seed(seed))}
        refs = {}
        for side in loaders:
            torch.manual_seed(seed)
            refs[side] = ReferenceVAE()
        opts = {side: torch.optim.Adam(model.parameters(), lr=1e-3) for side, model in refs.items()}

        def ref_epochs() -> float:
            noise = torch.random.get_rng_state()
            for side, loader in loaders.items():
                torch.random.set_rng_state(noise)  # both reference loops draw the same eps
                start = time.perf_counter()
                model, opt = refs[side], opts[side]
                model.train()
                for x, *_ in loader:
                    opt.zero_grad()
                    recon, mu, logvar = model(x)
                    loss = ReferenceVAE.loss(recon, x, mu, logvar)
                    loss.backward()
                    opt.step()
                    loss.item()
                seconds[side].append(time.perf_counter() - start)
            return 0.0

        callback, ours_s, _, _ = timed_epochs(ref_epochs)
        Trainer(epochs=epochs, lr=1e-3, progress=False, callbacks=[callback]).fit(ours, task.train_batches(ours))
        seconds["ours"] += ours_s
        per_seed["ours_test_elbo"].append(task.bound(ours, "test")["test_elbo"])
        test_x = task.sets["test"][0]
        # Same initialisation, batches and eps: the two reference loops differ only in how a batch is
        # read, so their weights must be the same to the bit (the ELBO does not depend on the data path).
        same_weights.append(all(torch.equal(a, b) for a, b in
                                zip(refs["ref"].parameters(), refs["ref_items"].parameters())))
        noise = torch.random.get_rng_state()
        for side, model in refs.items():
            torch.random.set_rng_state(noise)
            with torch.no_grad():
                model.eval()
                recon, mu, logvar = model(test_x)
                per_seed[f"{side}_test_elbo"].append(-float(ReferenceVAE.loss(recon, test_x, mu, logvar)) / len(test_x))
        print(json.dumps({"seed": seed, **{k: v[-1] for k, v in per_seed.items()}}), flush=True)
    n = len(data.train_x)
    row = {"epochs": epochs, "train_images": n, "seeds": seeds, "per_seed": per_seed,
           "refs_identical": all(same_weights)}
    for side in sides:
        row[f"{side}_samples_per_s"] = n / statistics.median(seconds[side])
        row[f"{side}_test_elbo"] = float(np.mean(per_seed[f"{side}_test_elbo"]))
    print(json.dumps(row), flush=True)
    return row


# -- section 4: scaling (child processes) ----------------------------------------------------------
def child_scaling(num_nodes: int, epochs: int, seed: int) -> dict:
    from vgae_toolkit.data.graphs import make_sbm
    from vgae_toolkit.models.graph import GraphAutoEncoder
    from vgae_toolkit.tasks.link import LinkPredictionTask
    from vgae_toolkit.trainer import Trainer

    start = time.perf_counter()
    block = 1000  # communities of 1000 nodes; expected degree 8 inside and 2 across
    blocks = max(num_nodes // block, 2)
    size = num_nodes // blocks
    data = make_sbm(num_nodes=num_nodes, num_blocks=blocks, p_in=8 / (size - 1), p_out=2 / (num_nodes - size),
                    num_features=32, seed=seed)
    task = LinkPredictionTask(data, split_seed=seed, sampler_seed=seed)
    setup = time.perf_counter() - start
    torch.manual_seed(seed)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=True, recon="sampled", bias=False)
    callback, seconds, _, _ = timed_epochs()
    Trainer(epochs=epochs, progress=False, callbacks=[callback]).fit(model, task.train_batches(model))
    start = time.perf_counter()
    val = task.evaluate(model, "val")
    eval_s = time.perf_counter() - start
    return {"num_nodes": num_nodes, "num_edges": int(data.edge_index.size(1) // 2), "epochs": epochs, "setup_s": setup,
            "train_ms": median_ms(seconds), "eval_ms": 1000 * eval_s, "val_auc": val["val_auc"],
            "peak_rss_mb": peak_rss_mb()}


def scaling_epochs(size: int, largest: int, epochs: int, cap: int = 1000) -> int:
    """Epochs to time at ``size`` nodes: ``epochs`` at the largest size and proportionally more on smaller
    graphs (at most ``cap``), so that every size is timed over about the same work. An epoch of a 10k-node
    graph takes about 20 ms, and a median over a few of them moved by a third from one process to the next."""
    return min(cap, max(epochs, round(epochs * largest / size)))


def run_child(args: list[str], timeout: float = 1800) -> dict:
    """Run ``python benchmarks/bench.py --child ...`` (this file) and return its last JSON line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paired_difference(per_seed: dict | None, metric: str, other: str = "ref", scale: float = 100.0) -> str:
    """``ours - other`` of a metric over seeds (x ``scale``) as ``mean ± standard error``; ``-`` with one seed."""
    if not per_seed or len(per_seed[f"ours_{metric}"]) < 2:
        return "-"
    diff = scale * (np.asarray(per_seed[f"ours_{metric}"]) - np.asarray(per_seed[f"{other}_{metric}"]))
    return f"{diff.mean():+.2f} ± {diff.std(ddof=1) / np.sqrt(diff.size):.2f}"


def elbo_difference(per_seed: dict | None, side: str) -> str:
    """``ours - side`` of the test ELBO over seeds, in nats (:func:`paired_difference`)."""
    return paired_difference(per_seed, "test_elbo", other=side, scale=1.0)


def growth_exponent(edges: list[int], ms: list[float]) -> float:
    """Least-squares slope of log(ms per epoch) against log(edges)."""
    return float(np.polyfit(np.log(edges), np.log(ms), 1)[0])


# -- report ------------------------------------------------------------------------------------------
def render(results: dict, command: str, wall: float) -> str:
    lines = ["# Benchmark: vgae-toolkit against the reference loops", "",
             f"- command: `{command}`",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
             f"- machine: {machine()}",
             f"- wall time: {wall / 60:.1f} min", "",
             "Ratios are reference / ours (more = we are faster); times are medians over epochs after "
             f"{WARMUP} warm-up epochs, both sides measured in the same run. Graph sections: each side runs "
             f"{BLOCK} epochs in a row, then the other (a run's epochs follow one another; single epochs in turn "
             "would start each epoch with the other side's tensors in the cache).", ""]
    if "link" in results:
        seeds = results["link"][0].get("seeds", [0]) if results["link"] else [0]
        lines += ["## GAE / VGAE link prediction (PyG examples/autoencoder.py-style loop)", "",
                  f"Seeds {seeds[0]}-{seeds[-1]}: each seed is its own split and initialisation; times are medians over "
                  "the epochs of all seeds, test AUC/AP means over the seeds.", "",
                  "| dataset | model | epochs | train ms ours | train ms ref | speed-up | eval ms ours | eval ms ref "
                  "| speed-up | test AUC ours / ref | test AP ours / ref | AUC ours - ref |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["link"]:
            lines.append(
                f"| {r['dataset']} | {r['model']} | {r['epochs']} | {r['ours_train_ms']:.2f} | {r['ref_train_ms']:.2f} "
                f"| {r['ref_train_ms'] / r['ours_train_ms']:.1f}x | {r['ours_eval_ms']:.2f} | {r['ref_eval_ms']:.2f} "
                f"| {r['ref_eval_ms'] / r['ours_eval_ms']:.1f}x | {100 * r['ours_test_auc']:.2f} / "
                f"{100 * r['ref_test_auc']:.2f} | {100 * r['ours_test_ap']:.2f} / {100 * r['ref_test_ap']:.2f} "
                f"| {paired_difference(r.get('per_seed_test'), 'auc')} |")
        lines += ["", "AUC ours - ref: the mean over seeds of the per-seed difference (x100), ± its standard error; "
                  "a difference within about two standard errors is noise of the splits, not of the method.", "",
                  "Ours: the reference's model (GCN layers with biases, `recon=sampled`: its loss and one negative "
                  "per edge), features as in the data files; without biases, as in the paper's code, PubMed GAE "
                  "scored 0.2 points under the reference over 5 seeds; evaluation = encoder on the training graph "
                  "+ AUC/AP in torch on the fixed negatives. "
                  "Reference: GCNConv message passing every call, `negative_sampling` every step, scikit-learn "
                  "AUC/AP.", ""]
    if results.get("gat"):
        seeds = results["gat"][0].get("seeds", [0])
        lines += ["## GAE with a GAT encoder (the same loop over the same GATConv layers)", "",
                  f"Seeds {seeds[0]}-{seeds[-1]}, as above: times are medians over the epochs of all seeds, test "
                  "AUC/AP means over the seeds.", "",
                  "| dataset | model | epochs | train ms ours | train ms ref | speed-up | test AUC ours / ref "
                  "| test AP ours / ref | AUC ours - ref |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["gat"]:
            lines.append(
                f"| {r['dataset']} | {r['model']} | {r['epochs']} | {r['ours_train_ms']:.2f} | {r['ref_train_ms']:.2f} "
                f"| {r['ref_train_ms'] / r['ours_train_ms']:.1f}x | {100 * r['ours_test_auc']:.2f} / "
                f"{100 * r['ref_test_auc']:.2f} | {100 * r['ours_test_ap']:.2f} / {100 * r['ref_test_ap']:.2f} "
                f"| {paired_difference(r.get('per_seed_test'), 'auc')} |")
        lines += ["", "Both sides: `GATConv(F, 8, heads=4)` -> ELU -> `GATConv(32, 16)`, biases, the same initial "
                  "weights, Adam 0.01, one fresh negative per training edge. Ours: `GraphAutoEncoder(encoder=gat, "
                  "recon=sampled)` (`MessagePassingEncoder`: self-loops added once per graph, sparse features "
                  "projected as a sparse product, the attention-weighted sums as one bag product per layer, "
                  "the fused sampled loss). Reference: the example's loop over `GATConv`, which adds the "
                  "self-loops, projects the dense features and scatters [E, heads, C] messages on every call. "
                  "Test AUC/AP after the same epochs from the same initial weights.", ""]
    if results.get("maskgae"):
        from bench_maskgae import render_maskgae

        lines += render_maskgae(results["maskgae"], paired_difference)
    if "featureless" in results:
        ours, ref = results["featureless"]["ours"], results["featureless"]["ref"]
        lines += ["## Featureless PubMed (GAE*)", "",
                  "| input | train ms/epoch | peak RSS MiB | test AUC | test AP |", "|---|---|---|---|---|",
                  f"| ours: learnable N x 32 first layer | {ours['train_ms']:.1f} | {ours['peak_rss_mb']:.0f} "
                  f"| {100 * ours['test_auc']:.2f} | {100 * ours['test_ap']:.2f} |",
                  f"| reference: dense N x N identity | {ref['train_ms']:.1f} | {ref['peak_rss_mb']:.0f} "
                  f"| {100 * ref['test_auc']:.2f} | {100 * ref['test_ap']:.2f} |", "",
                  f"{ours['epochs']} epochs each, one child process per side (peak RSS is the whole process, "
                  f"Python and libraries included). Speed-up {ref['train_ms'] / ours['train_ms']:.1f}x, memory "
                  f"{ref['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x less.", ""]
    if "vae" in results:
        r = results["vae"]
        lines += ["## VAE on MNIST (pytorch/examples vae/main.py-style loop)", "",
                  "| side | images/s | ours / side | test ELBO (nats) | ELBO ours - side |", "|---|---|---|---|---|",
                  f"| ours | {r['ours_samples_per_s']:.0f} | | {r['ours_test_elbo']:.2f} | |"]
        names = {"ref_items": "reference, the example's data path (a PIL image per item, `ToTensor`)",
                 "ref": "reference, in-memory tensor batches"}
        for side, name in names.items():
            if f"{side}_samples_per_s" in r:
                speed = r["ours_samples_per_s"] / r[f"{side}_samples_per_s"]
                lines.append(f"| {name} | {r[f'{side}_samples_per_s']:.0f} | {speed:.2f}x "
                             f"| {r[f'{side}_test_elbo']:.2f} | {elbo_difference(r.get('per_seed'), side)} |")
        seeds = r.get("seeds", [0])
        lines += ["", f"{r['epochs']} epochs over {r['train_images']} images each, batch 128, Adam 1e-3, the three "
                  f"loops in lockstep from the same initialisation, seeds {seeds[0]}-{seeds[-1]}: images/s over "
                  "the median epoch of all seeds, ELBOs as means, their difference as mean ± standard error over "
                  "seeds. pytorch/examples reads MNIST through torchvision's "
                  "dataset, one PIL image per item converted by `ToTensor` (first row, the steps written out "
                  "with PIL); the second row gives the same loop our in-memory tensors, so it measures the "
                  "training step alone. The step is mostly the MLP's matrix products, the same in every loop."]
        if "refs_identical" in r:
            lines += ["", "The two reference loops see the same batches and draw the same noise: "
                      + ("they ended every seed with bit-identical weights, so the data path changes the cost and "
                         "not the result." if r["refs_identical"] else
                         "**their weights differed**, so their data paths are not equivalent.")]
        lines.append("")
    if results.get("iw"):
        from bench_iw import render_iw

        lines += render_iw(results["iw"])
    if "scaling" in results:
        rows = results["scaling"]
        lines += ["## Scaling on synthetic SBM graphs (VGAE, sampled loss, 32 features, average degree 10)", "",
                  "| nodes | edges | epochs | setup s | train ms/epoch | eval ms | peak RSS MiB | val AUC |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['num_nodes']:,} | {r['num_edges']:,} | {r.get('epochs', '-')} | {r['setup_s']:.1f} "
                         f"| {r['train_ms']:.1f} "
                         f"| {r['eval_ms']:.1f} | {r['peak_rss_mb']:.0f} | {100 * r['val_auc']:.1f} |")
        lines += ["", f"Growth exponent of the epoch time in the edge count: "
                  f"**{results['scaling_exponent']:.2f}** (least squares on log-log, all sizes). The largest graph "
                  "trains for the epochs given and smaller ones proportionally more (`scaling_epochs`), so that "
                  "each size is timed over about the same work; medians after the warm-up epochs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--data-dir", default=os.environ.get("VGAE_TOOLKIT_DATA", "data"))
    parser.add_argument("--out", default="experiments/bench/results.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--link-epochs", type=int, default=200)
    parser.add_argument("--link-datasets", default="cora,pubmed")
    parser.add_argument("--link-seeds", type=int, default=5, help="seeds per dataset and model, from --seed on")
    parser.add_argument("--gat-epochs", type=int, default=200)
    parser.add_argument("--gat-datasets", default="cora,pubmed")
    parser.add_argument("--gat-seeds", type=int, default=3, help="seeds per dataset, from --seed on")
    parser.add_argument("--maskgae-epochs", type=int, default=100)
    parser.add_argument("--maskgae-datasets", default="cora,pubmed")
    parser.add_argument("--maskgae-seeds", type=int, default=2, help="seeds per dataset, from --seed on")
    parser.add_argument("--featureless-epochs", type=int, default=20)
    parser.add_argument("--vae-epochs", type=int, default=3)
    parser.add_argument("--vae-seeds", type=int, default=3, help="VAE runs per side, from --seed on")
    parser.add_argument("--iw-images", type=int, default=500, help="MNIST test images of the iw section")
    parser.add_argument("--iw-samples", type=int, default=5000, help="K of the iw section")
    parser.add_argument("--iw-epochs", type=int, default=1, help="training epochs of the iw section's VAE")
    parser.add_argument("--scaling-sizes", default="10000,30000,100000,300000,1000000")
    parser.add_argument("--scaling-epochs", type=int, default=10,
                        help="epochs at the largest size; smaller graphs run proportionally more (see scaling_epochs)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # one measurement in a fresh process, printed as one JSON line
        kind, *rest = args.child
        if kind == "featureless":
            out = child_featureless(args.data_dir, rest[0], args.featureless_epochs, args.seed)
        else:
            out = child_scaling(int(rest[0]), args.scaling_epochs, args.seed)
        print(json.dumps(out), flush=True)
        return

    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; expected a subset of {list(SECTIONS)}")
    common = ["--data-dir", args.data_dir, "--seed", str(args.seed)] + (
        ["--threads", str(args.threads)] if args.threads else [])
    start = time.perf_counter()
    results: dict = {}
    if "link" in sections:
        seeds = list(range(args.seed, args.seed + args.link_seeds))
        results["link"] = bench_link(args.data_dir, args.link_datasets.split(","), args.link_epochs, seeds)
    if "gat" in sections:
        seeds = list(range(args.seed, args.seed + args.gat_seeds))
        results["gat"] = bench_gat(args.data_dir, args.gat_datasets.split(","), args.gat_epochs, seeds)
    if "maskgae" in sections:
        from bench_maskgae import bench_maskgae  # benchmarks/bench_maskgae.py, beside this script

        seeds = list(range(args.seed, args.seed + args.maskgae_seeds))
        results["maskgae"] = bench_maskgae(args.data_dir, args.maskgae_datasets.split(","), args.maskgae_epochs, seeds,
                                           timed_epochs, BLOCK)
        print(json.dumps(results["maskgae"]), flush=True)
    if "featureless" in sections:
        results["featureless"] = {
            side: run_child(["featureless", side, *common, "--featureless-epochs", str(args.featureless_epochs)])
            for side in ("ours", "ref")}
        print(json.dumps(results["featureless"]), flush=True)
    if "vae" in sections:
        results["vae"] = bench_vae(args.data_dir, args.vae_epochs, list(range(args.seed, args.seed + args.vae_seeds)))
    if "iw" in sections:
        from bench_iw import bench_iw  # benchmarks/bench_iw.py, beside this script

        results["iw"] = bench_iw(args.data_dir, args.iw_images, args.iw_samples, args.iw_epochs, args.seed)
        print(json.dumps(results["iw"]), flush=True)
    if "scaling" in sections:
        rows = []
        sizes = [int(s) for s in args.scaling_sizes.split(",")]
        for size in sizes:
            epochs = scaling_epochs(size, max(sizes), args.scaling_epochs)
            rows.append(run_child(["scaling", str(size), *common, "--scaling-epochs", str(epochs)]))
            print(json.dumps(rows[-1]), flush=True)
        results["scaling"] = rows
        results["scaling_exponent"] = growth_exponent([r["num_edges"] for r in rows], [r["train_ms"] for r in rows])
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--data-dir" in shown[:-1]:  # a machine's path does not belong in a committed report
        shown[shown.index("--data-dir") + 1] = "$VGAE_TOOLKIT_DATA"
    command = "python benchmarks/bench.py " + " ".join(shown)
    report = render(results, command.strip(), time.perf_counter() - start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n")
    (out.with_suffix(".json")).write_text(json.dumps(results, indent=1) + "\n")
    print(report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
