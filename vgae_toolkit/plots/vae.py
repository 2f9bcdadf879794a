"""The VAE's figures as PNG files, after Kingma & Welling, *Auto-Encoding Variational Bayes* (AEVB),
https://arxiv.org/abs/1312.6114: random samples (Fig. 5), the learned 2-D manifold (Fig. 4), test
reconstructions, a CVAE style grid, one run's ELBO curves, the bound against the number of
training samples seen for several runs (Fig. 2), and 2-D latent codes coloured by label.

From the command line, over finished run directories (or sweep directories that hold them)::

    python -m vgae_toolkit.plots.vae figure2 SWEEP_DIR [SWEEP_DIR ...] --out experiments/vae
    python -m vgae_toolkit.plots.vae figure4 SWEEP_DIR --out experiments/vae
    python -m vgae_toolkit.plots.vae figure5 SWEEP_DIR --out experiments/vae
    python -m vgae_toolkit.plots.vae figure2-csv experiments/vae/figure2_curves.csv --out experiments/vae
    python -m vgae_toolkit.plots.vae latent-scatter SWEEP_DIR --out experiments/vae   # 2-D latents, by label
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import Tensor, nn

from vgae_toolkit.plots.history import save_figure
from vgae_toolkit.plots.images import save_image_grid

SEED = 0  # every figure draws its z from this seed, so reruns of a model give the same picture


def pixel_scale(shape: tuple[int, int]) -> int:
    """Integer upscale that makes an image about 56 pixels tall (28 px MNIST -> 2, 8 px digits -> 7)."""
    return max(1, round(56 / max(shape)))


@torch.no_grad()
def decoder_means(model: nn.Module, z: Tensor, y: Tensor | None = None) -> Tensor:
    """Means of p(x|z) (or p(x|z, y)), ``[num, pixels]``."""
    device = next(model.parameters(), z).device  # the model's (a parameter-free model: z's)
    return model.decoder.mean(model.decode(z.to(device), None if y is None else y.to(device)))


def save_samples(model: nn.Module, shape: tuple[int, int], path: str | Path, *, num: int = 100, nrow: int = 10,
                 labels: Tensor | None = None) -> Path:
    """Decoder means for ``num`` draws z ~ N(0, I) (AEVB Fig. 5); ``labels`` pick a CVAE's classes."""
    z = torch.randn(num, model.latent_dim, generator=torch.Generator().manual_seed(SEED))
    title = "samples, label = column" if labels is not None else "samples from the prior"
    return save_image_grid(decoder_means(model, z, labels), shape, path, nrow, title=title, scale=pixel_scale(shape))


@torch.no_grad()
def save_reconstructions(model: nn.Module, x: Tensor, y: Tensor | None, shape: tuple[int, int], path: str | Path,
                         *, num: int = 50, nrow: int = 10) -> Path:
    """The first ``num`` images (odd rows) above their reconstructions at z = mu (even rows)."""
    x = x[:num]
    recon = model.reconstruct(x, None if y is None else y[:num])
    rows = [part for i in range(0, len(x), nrow) for part in (x[i:i + nrow], recon[i:i + nrow])]
    return save_image_grid(torch.cat(rows), shape, path, nrow, title="test images above their reconstructions",
                           scale=pixel_scale(shape))


def manifold_latents(steps: int) -> Tensor:
    """A ``steps x steps`` grid of 2-D latents: evenly spaced points of the unit square mapped through
    the inverse Gaussian CDF (AEVB Fig. 4), ``[steps * steps, 2]``; rows go down in z_2, columns right in z_1."""
    u = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # (0, 1), the ends excluded
    z = torch.distributions.Normal(0.0, 1.0).icdf(u)
    z2, z1 = torch.meshgrid(z.flip(0), z, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)


def save_manifold(model: nn.Module, shape: tuple[int, int], path: str | Path, *, steps: int = 20) -> Path:
    """Decoder means over :func:`manifold_latents` for a model with a 2-D latent space (AEVB Fig. 4)."""
    if model.latent_dim != 2:
        raise ValueError(f"the manifold needs latent_dim=2, got {model.latent_dim}")
    return save_image_grid(decoder_means(model, manifold_latents(steps)), shape, path, steps,
                           title="learned manifold", scale=pixel_scale(shape))


def save_style_grid(model: nn.Module, shape: tuple[int, int], path: str | Path, *, num_classes: int,
                    rows: int = 10) -> Path:
    """A CVAE's style grid: one z ~ N(0, I) per row, decoded with every label 0..num_classes-1."""
    z = torch.randn(rows, model.latent_dim, generator=torch.Generator().manual_seed(SEED))
    z = z.repeat_interleave(num_classes, dim=0)  # [rows * classes, latent]
    y = torch.arange(num_classes).repeat(rows)
    return save_image_grid(decoder_means(model, z, y), shape, path, num_classes,
                           title="one z per row, label = column", scale=pixel_scale(shape))


# -- curves --------------------------------------------------------------------------------
def bound_curves(history: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """``{"train" | "val" | "test": (samples_seen, ELBO)}`` from a run's history.

    The training bound is the running mean over the epoch's mini-batches, -(recon + KL), the bound
    the training loop itself computes; validation and test bounds are evaluated after the epoch.
    """
    curves = {}
    for name, value in (("train", lambda h: -(h["train_recon"] + h["train_kl"])),
                        ("val", lambda h: h["val_elbo"]), ("test", lambda h: h["test_elbo"])):
        points = [(h["samples_seen"], value(h)) for h in history if all(k in h for k in _needs(name))]
        if points:
            curves[name] = tuple(map(list, zip(*points)))
    return curves


def _needs(name: str) -> tuple[str, ...]:
    return ("samples_seen", "train_recon", "train_kl") if name == "train" else ("samples_seen", f"{name}_elbo")


STYLE = {"train": {"linestyle": "--"}, "val": {"linestyle": ":"}, "test": {"linestyle": "-"}}


def plot_elbo_curves(history: list[dict], path: str | Path, *, title: str = "") -> Path:
    """One run's per-datapoint ELBO (nats) against training samples seen."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, (xs, ys) in bound_curves(history).items():
        ax.plot(xs, ys, label=name, **STYLE[name])
    ax.set(xlabel="training samples seen", ylabel="ELBO per datapoint (nats)", title=title)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.legend()
    return save_figure(fig, path)


# -- figures over several runs ---------------------------------------------------------------
def find_runs(dirs: list[str | Path]) -> list[tuple[Path, dict]]:
    """Finished runs (``metrics.json`` present) in ``dirs`` or one level below, as (dir, metrics):
    in the order of ``dirs``, by latent size within each."""
    found = []
    for d in map(Path, dirs):
        runs = [(path.parent, json.loads(path.read_text()))
                for path in [d / "metrics.json", *d.glob("*/metrics.json")] if path.is_file()]
        found += sorted(runs, key=lambda r: (r[1]["dataset"], latent_dim(r[1])))
    if not found:
        raise FileNotFoundError(f"no finished run (metrics.json) in {', '.join(map(str, dirs))}")
    return found


def latent_dim(metrics: dict) -> int:
    return metrics["config"]["model"]["latent_dim"]


CURVE_POINTS = 400  # points kept per curve of figure 2 (a Frey Face run to 1e8 samples has 62,820 epochs)


def log_spaced(n: int, keep: int) -> list[int]:
    """Indices of at most about ``keep`` of ``n`` points, evenly spaced on a log scale of the index
    (where a log x-axis draws them), the first and last included; all of them when ``n <= keep``."""
    if n <= keep:
        return list(range(n))
    marks = np.unique(np.round(np.geomspace(1, n, keep)).astype(int)) - 1
    return sorted({0, n - 1, *marks.tolist()})


def figure2(dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """AEVB Fig. 2: train and test bound against training samples seen, one panel per (dataset,
    latent size); writes ``figure2.png``, ``figure2_curves.csv`` (up to :data:`CURVE_POINTS` log-spaced
    epochs per curve) and ``figure2_final.csv``."""
    runs, out_dir = find_runs(dirs), Path(out_dir)
    rows, finals = [], []
    for _, m in runs:
        for name, (xs, ys) in bound_curves(m["history"]).items():
            rows += [{"dataset": m["dataset"], "latent_dim": latent_dim(m), "curve": name, "samples_seen": xs[i],
                      "elbo": ys[i]} for i in log_spaced(len(xs), CURVE_POINTS)]
        finals.append({"dataset": m["dataset"], "latent_dim": latent_dim(m), "epochs": len(m["history"]),
                       "samples_seen": m["history"][-1]["samples_seen"], "train_elbo": m.get("train_elbo"),
                       "test_elbo": m.get("test_elbo"), "test_iw_log_likelihood": m.get("test_iw_log_likelihood"),
                       "active_units": m.get("active_units"), "train_seconds": round(m["train_seconds"], 1)})
    paths = [plot_figure2(rows, out_dir / "figure2.png")]
    paths.append(_write_csv(out_dir / "figure2_curves.csv", rows))
    paths.append(_write_csv(out_dir / "figure2_final.csv", finals))
    return paths


def read_curves(path: str | Path) -> list[dict]:
    """The rows of a ``figure2_curves.csv`` (``dataset,latent_dim,curve,samples_seen,elbo``), typed."""
    with Path(path).open(newline="") as f:
        return [{"dataset": r["dataset"], "latent_dim": int(r["latent_dim"]), "curve": r["curve"],
                 "samples_seen": int(r["samples_seen"]), "elbo": float(r["elbo"])} for r in csv.DictReader(f)]


def plot_figure2(rows: list[dict], path: str | Path) -> Path:
    """Writes :func:`figure2_figure` of ``rows`` as a PNG."""
    return save_figure(figure2_figure(rows), Path(path), dpi=100)


def figure2_figure(rows: list[dict]) -> Figure:
    """AEVB Fig. 2 from curve rows (as in ``figure2_curves.csv``): one panel row per dataset, one
    panel per latent size, the training (dashed) and test (solid) bound against samples seen.

    Every panel of a dataset shares one y-range, from the lowest to the highest point drawn, so that
    latent sizes can be compared, and one logarithmic x-range, over the samples seen in its runs.
    """
    shown = [r for r in rows if r["curve"] != "val"]  # the paper draws the training and test bound
    datasets = list(dict.fromkeys(r["dataset"] for r in shown))
    sizes = {d: sorted({r["latent_dim"] for r in shown if r["dataset"] == d}) for d in datasets}
    cols = max(len(v) for v in sizes.values())
    fig = Figure(figsize=(3.2 * cols, 2.8 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), cols, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for r, dataset in enumerate(datasets):
        points = [row for row in shown if row["dataset"] == dataset]
        low, high = min(p["elbo"] for p in points), max(p["elbo"] for p in points)
        pad = 0.03 * (high - low) or 1.0
        x_range = (min(p["samples_seen"] for p in points), max(p["samples_seen"] for p in points))
        for c, size in enumerate(sizes[dataset]):
            ax = axes[r, c]
            ax.set_visible(True)
            for name in ("train", "test"):
                curve = [(p["samples_seen"], p["elbo"]) for p in points
                         if p["latent_dim"] == size and p["curve"] == name]
                if curve:
                    ax.plot(*zip(*curve), label=f"AEVB ({name})", **STYLE[name])
            ax.set_ylim(low - pad, high + pad)
            ax.set_xscale("log")
            ax.set_xlim(*x_range)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{dataset}, $N_z$ = {size}", fontsize=9)
            ax.set_xlabel("# training samples evaluated", fontsize=8)
            if c == 0:
                ax.set_ylabel("ELBO per datapoint (nats)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    return fig


def _write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return path


def image_panels(dirs: list[str | Path], png: str, path: str | Path, title: str, per_row: int = 4) -> Path:
    """Places the ``png`` of several runs side by side, pixel for pixel (no resampling), each under a
    label naming its dataset and latent size."""
    from matplotlib.image import imread

    runs = [(d, m) for d, m in find_runs(dirs) if (d / png).is_file()]
    if not runs:
        raise FileNotFoundError(f"no {png} in the runs of {', '.join(map(str, dirs))}")
    images = [imread(d / png) for d, _ in runs]  # [h, w, channels] floats in [0, 1]
    gap, band = 16, 28  # pixels between panels, and for each label
    rows = [list(range(i, min(i + per_row, len(runs)))) for i in range(0, len(runs), per_row)]
    row_heights = [band + max(images[i].shape[0] for i in row) for row in rows]
    width = max(sum(images[i].shape[1] for i in row) + gap * (len(row) - 1) for row in rows)
    height = band + sum(row_heights) + gap * (len(rows) - 1)
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    fig.text(0.5, 1 - 0.5 * band / height, title, ha="center", va="center", fontsize=12)
    top = band
    for row, row_height in zip(rows, row_heights):
        left = 0
        for i in row:
            h, w = images[i].shape[:2]
            m = runs[i][1]
            fig.text((left + w / 2) / width, 1 - (top + band / 2) / height, f"{m['dataset']}, $N_z$ = {latent_dim(m)}",
                     ha="center", va="center", fontsize=10)
            fig.figimage(images[i], xo=left, yo=height - top - band - h, origin="upper", resize=False)
            left += w + gap
        top += row_height + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# -- latent spaces ------------------------------------------------------------------------------
def save_latent_scatter(panels: list[tuple[str, Tensor, Tensor | None]], path: str | Path, *,
                        title: str = "") -> Path:
    """Side-by-side scatter plots of 2-D latent codes, coloured by label.

    Args:
        panels (list): ``(title, codes [N, 2], labels [N] or None)`` per panel; each panel keeps its
            own axis ranges (an auto-encoder's codes have no prior to fix their scale).
        path (str or Path): the PNG to write.
        title (str): above all panels.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(4.2 * len(panels) + 1.2, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    classes: list[int] = []
    for ax, (name, codes, labels) in zip(axes, panels):
        codes = codes.detach().cpu().numpy()
        if codes.ndim != 2 or codes.shape[1] != 2:
            raise ValueError(f"{name}: a latent scatter needs 2-D codes, got shape {tuple(codes.shape)}")
        if labels is None:
            ax.scatter(codes[:, 0], codes[:, 1], s=2, alpha=0.5, color="tab:gray", linewidths=0)
        else:
            labels = labels.detach().cpu().numpy()
            ax.scatter(codes[:, 0], codes[:, 1], c=labels % 10, cmap="tab10", vmin=0, vmax=9, s=2, alpha=0.6,
                       linewidths=0)
            classes = sorted(set(classes) | {int(v) for v in labels})
        ax.set(title=name, xlabel="$z_1$", ylabel="$z_2$")
    if classes:
        cmap = colormaps["tab10"]
        handles = [Line2D([], [], marker="o", linestyle="", color=cmap(k % 10), label=str(k)) for k in classes]
        fig.legend(handles=handles, title="label", loc="outside right center", fontsize=8, markerscale=1.2)
    if title:
        fig.suptitle(title)
    return save_figure(fig, Path(path), dpi=100)


def latent_scatter(dirs: list[str | Path], out_dir: str | Path, *, which: str = "last") -> Path:
    """Posterior means of the test images of every run in ``dirs`` (2-D latents), one panel per run,
    ordered by model name; writes ``latent_scatter_<model>_vs_<model>....png`` into ``out_dir``.

    Each run's data and model are rebuilt from its checkpoint (:func:`vgae_toolkit.predict.load_run`).
    """
    from vgae_toolkit.predict import load_run

    runs = sorted(find_runs(dirs), key=lambda r: (r[1]["model"], str(r[0])))
    panels = []
    for run_dir, m in runs:
        task, model, _ = load_run(run_dir, which=which)
        codes = task.embed(model, num_samples=1)["latent_test"]  # [test images, 2]
        labels = task.sets["test"][1]  # the dataset's labels, whether or not the model saw them
        if m.get("variational") is False:
            name = f"{m['model']}: codes, test log p(x|z) {m['test_elbo']:.1f}"
        else:
            name = f"{m['model']}: posterior means, test ELBO {m['test_elbo']:.1f}"
        panels.append((name, codes, labels))
    names = "_vs_".join(m["model"] for _, m in runs)
    dataset = ", ".join(dict.fromkeys(m["dataset"] for _, m in runs))
    return save_latent_scatter(panels, Path(out_dir) / f"latent_scatter_{names}.png",
                               title=f"{dataset} test images in a 2-D latent space, coloured by label")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vgae_toolkit.plots.vae", description=__doc__.split("\n\n")[0])
    parser.add_argument("figure", choices=["figure2", "figure2-csv", "figure4", "figure5", "latent-scatter"])
    parser.add_argument("dirs", nargs="+", help="run directories or sweep directories that hold them "
                                                "(figure2-csv: a figure2_curves.csv)")
    parser.add_argument("--out", default="experiments/vae", help="folder for the figure (default: experiments/vae)")
    args = parser.parse_args(argv)
    if args.figure == "figure2":
        paths = figure2(args.dirs, args.out)
    elif args.figure == "figure2-csv":
        paths = [plot_figure2([row for f in args.dirs for row in read_curves(f)], Path(args.out) / "figure2.png")]
    elif args.figure == "latent-scatter":
        paths = [latent_scatter(args.dirs, args.out)]
    elif args.figure == "figure4":
        paths = [image_panels(args.dirs, "manifold.png", Path(args.out) / "figure4.png",
                              "learned data manifolds (AEVB Fig. 4)")]
    else:
        paths = [image_panels(args.dirs, "samples.png", Path(args.out) / "figure5.png",
                              "random samples for several latent sizes (AEVB Fig. 5)", per_row=2)]
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
