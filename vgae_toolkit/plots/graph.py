"""Figures of the VGAE paper's link-prediction experiment, from finished Table 1 runs.

Kipf & Welling, *Variational Graph Auto-Encoders* (https://arxiv.org/abs/1611.07308):

- Figure 1: a t-SNE of the VGAE's latent means on Cora, coloured by document class (never seen in
  training), citation links in grey;
- ROC and precision-recall curves of every Table 1 row on each dataset's test pairs, one seed.

Nothing is retrained: each run directory's checkpoint holds the weights (for SC and DW, the fitted
embedding) and the resolved config, from which the split and the model are rebuilt::

    python -m vgae_toolkit.plots.graph SWEEP_DIR [SWEEP_DIR ...] --out experiments/table1 [--seed 0]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import precision_recall_curve, roc_curve
from torch import Tensor

from vgae_toolkit import predict
from vgae_toolkit.plots.history import save_figure
from vgae_toolkit.report import DATASET_ORDER, ROW_ORDER, collect

DISPLAY_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}


def load_run(run_dir: str | Path):
    """``(task, model)`` of a finished run, with the weights it reported (``best.pt`` under select=best)."""
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    task, model, _ = predict.load_run(run_dir, which="best" if metrics.get("select") == "best" else "last")
    return task, model


def tsne_2d(z: Tensor, *, seed: int = 0) -> np.ndarray:
    """Two-dimensional t-SNE of the rows of ``z`` ``[N, d]`` (PCA start, perplexity 30)."""
    return TSNE(n_components=2, init="pca", perplexity=30.0, random_state=seed).fit_transform(z.double().numpy())


def plot_latent_space(xy: np.ndarray, labels: Tensor, edge_index: Tensor, path: str | Path, *,
                      title: str = "") -> Path:
    """Points ``xy`` ``[N, 2]`` coloured by ``labels``, every undirected edge a grey line behind them."""
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    row, col = edge_index[:, edge_index[0] < edge_index[1]].numpy()
    segments = np.stack([xy[row], xy[col]], axis=1)  # [E, 2 ends, 2 coordinates]
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.3, alpha=0.35, zorder=1))
    ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=6, linewidths=0, zorder=2)
    ax.set(xticks=[], yticks=[], title=title)
    return save_figure(fig, path)


def plot_roc_pr(scores: dict[str, tuple[Tensor, Tensor]], path: str | Path, *, title: str = "") -> Path:
    """ROC (left) and precision-recall (right) curves, one line per row: ``{row: (pos, neg) logits}``."""
    fig = Figure(figsize=(10, 4.4))
    ax_roc, ax_pr = fig.subplots(1, 2)
    for name, (pos, neg) in scores.items():
        labels = np.r_[np.ones(pos.numel()), np.zeros(neg.numel())]
        logits = torch.cat([pos, neg]).double().numpy()
        fpr, tpr, _ = roc_curve(labels, logits)
        precision, recall, _ = precision_recall_curve(labels, logits)
        ax_roc.plot(fpr, tpr, label=name, linewidth=1.2)
        ax_pr.plot(recall, precision, label=name, linewidth=1.2)
    ax_roc.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0.4, 1.01))
    ax_roc.legend(loc="lower right")
    ax_pr.legend(loc="lower left")
    fig.suptitle(title)
    return save_figure(fig, path)


def write_figures(roots: list[str | Path], out: str | Path, *, seed: int = 0, tsne_dataset: str = "cora") -> list[Path]:
    """Figure 1 (VGAE on ``tsne_dataset``) and one ROC/PR figure per dataset, from runs of ``seed``."""
    runs = collect(*roots)
    runs = runs[runs["seed"] == seed]
    if runs.empty:
        raise SystemExit(f"no finished runs of seed {seed} under {', '.join(map(str, roots))}")
    out, written = Path(out), []
    datasets = [d for d in DATASET_ORDER if d in set(runs["dataset"])]
    datasets += sorted(set(runs["dataset"]) - set(datasets))
    for dataset in datasets:
        here = runs[runs["dataset"] == dataset].drop_duplicates("row").set_index("row")
        name = DISPLAY_NAMES.get(dataset, dataset)
        scores = {}
        for row in [r for r in ROW_ORDER if r in here.index] + sorted(set(here.index) - set(ROW_ORDER)):
            task, model = load_run(here.loc[row, "path"])
            scores[row] = task.scores(model, "test")
            if row == "VGAE" and dataset == tsne_dataset:
                mu = task.embed(model)["embeddings"]  # posterior means, [num_nodes, latent]
                data = task.data
                written.append(plot_latent_space(
                    tsne_2d(mu, seed=seed), data.y, data.edge_index, out / f"figure1_latent_{dataset}.png",
                    title=f"VGAE latent means on {name} (t-SNE), coloured by class; links in grey"))
        written.append(plot_roc_pr(scores, out / f"roc_pr_{dataset}.png", title=f"{name}: test links, seed {seed}"))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="sweep or run directories holding finished Table 1 runs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--seed", type=int, default=0, help="the seed whose runs are drawn (default 0)")
    parser.add_argument("--tsne-dataset", default="cora", help="dataset of Figure 1 (default cora)")
    args = parser.parse_args(argv)
    for path in write_figures(args.roots, args.out, seed=args.seed, tsne_dataset=args.tsne_dataset):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
