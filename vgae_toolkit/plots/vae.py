"""The VAE's figures as PNG files, after Kingma & Welling, *Auto-Encoding Variational Bayes* (AEVB),
https://arxiv.org/abs/1312.6114: random samples (Fig. 5), the learned 2-D manifold (Fig. 4), test
reconstructions, a CVAE style grid, one run's ELBO curves, and the bound against the number of
training samples seen for several runs (Fig. 2).

From the command line, over finished run directories (or sweep directories that hold them)::

    python -m vgae_toolkit.plots.vae figure2 SWEEP_DIR [SWEEP_DIR ...] --out experiments/vae
    python -m vgae_toolkit.plots.vae figure4 SWEEP_DIR --out experiments/vae
    python -m vgae_toolkit.plots.vae figure5 SWEEP_DIR --out experiments/vae
"""
from __future__ import annotations

import argparse
import csv
import json
import math
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


def figure2(dirs: list[str | Path], out_dir: str | Path) -> list[Path]:
    """AEVB Fig. 2: train and test bound against training samples seen, one panel per (dataset,
    latent size); writes ``figure2.png``, ``figure2_curves.csv`` and ``figure2_final.csv``."""
    runs, out_dir = find_runs(dirs), Path(out_dir)
    datasets = list(dict.fromkeys(m["dataset"] for _, m in runs))
    cols = max(sum(m["dataset"] == d for _, m in runs) for d in datasets)
    fig = Figure(figsize=(3.2 * cols, 2.8 * len(datasets)), layout="constrained")
    axes = fig.subplots(len(datasets), cols, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    rows, finals = [], []
    for r, dataset in enumerate(datasets):
        for c, (_, m) in enumerate([run for run in runs if run[1]["dataset"] == dataset]):
            ax = axes[r, c]
            ax.set_visible(True)
            shown = []
            for name, (xs, ys) in bound_curves(m["history"]).items():
                if name != "val":
                    ax.plot(xs, ys, label=f"AEVB ({name})", **STYLE[name])
                    shown += ys
                rows += [{"dataset": dataset, "latent_dim": latent_dim(m), "curve": name, "samples_seen": x,
                          "elbo": y} for x, y in zip(xs, ys)]
            # Like the paper, let the first, far lower, points leave the panel so the rest can be read.
            low, high = np.percentile(shown, 10), max(shown)
            pad = 0.05 * (high - low) or 1.0
            ax.set_ylim(low - pad, high + pad)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{dataset}, $N_z$ = {latent_dim(m)}", fontsize=9)
            ax.set_xlabel("# training samples evaluated", fontsize=8)
            if c == 0:
                ax.set_ylabel("ELBO per datapoint (nats)", fontsize=8)
            ax.tick_params(labelsize=7)
            finals.append({"dataset": dataset, "latent_dim": latent_dim(m), "epochs": len(m["history"]),
                           "samples_seen": m["history"][-1]["samples_seen"], "train_elbo": m.get("train_elbo"),
                           "test_elbo": m.get("test_elbo"), "test_iw_log_likelihood": m.get("test_iw_log_likelihood"),
                           "active_units": m.get("active_units"), "train_seconds": round(m["train_seconds"], 1)})
    axes[0, 0].legend(fontsize=7)
    paths = [save_figure(fig, out_dir / "figure2.png", dpi=100)]
    paths.append(_write_csv(out_dir / "figure2_curves.csv", rows))
    paths.append(_write_csv(out_dir / "figure2_final.csv", finals))
    return paths


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vgae_toolkit.plots.vae", description=__doc__.split("\n\n")[0])
    parser.add_argument("figure", choices=["figure2", "figure4", "figure5"])
    parser.add_argument("dirs", nargs="+", help="run directories or sweep directories that hold them")
    parser.add_argument("--out", default="experiments/vae", help="folder for the figure (default: experiments/vae)")
    args = parser.parse_args(argv)
    if args.figure == "figure2":
        paths = figure2(args.dirs, args.out)
    elif args.figure == "figure4":
        paths = [image_panels(args.dirs, "manifold.png", Path(args.out) / "figure4.png",
                              "learned data manifolds (AEVB Fig. 4)")]
    else:
        paths = [image_panels(args.dirs, "samples.png", Path(args.out) / "figure5.png",
                              "random samples for several latent sizes (AEVB Fig. 5)", per_row=2)]
    print("\n".join(map(str, paths)))


if __name__ == "__main__":
    main()
