"""The ``iw`` section of ``benchmarks/bench.py``: the importance-weighted log p(x) (Burda et al. 2016's
K = 5000) of the default VAE on MNIST test images, ours
(:func:`vgae_toolkit.metrics.importance_weighted_log_likelihood`) against the straightforward loop the toolkit ran before (one decoder call on ``[chunk, batch]`` samples,
the model's own likelihood and densities, the operators' own threading).

Both sides evaluate the same trained weights on the same batches of 100 images, in turn (which side
goes first alternates), and each batch is seeded the same for both, so they see the same draws and
differ only by rounding. Times are wall-clock and process CPU seconds; the full test set's time is
extrapolated linearly from the subset (the cost is the same for every image).
"""
from __future__ import annotations

import math
import os
import time

import torch

FULL_TEST_SET = 10_000  # MNIST's test images, the figure the README states


@torch.no_grad()
def reference_iw(model, x, y=None, *, num_samples: int, chunk: int = 500, batch_size: int = 100):
    """The estimate as the toolkit computed it before the tiled kernel (``vgae_toolkit/ops/iw.py``)."""
    from vgae_toolkit.models.latent import standard_normal_log_prob

    out = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], None if y is None else y[start : start + batch_size]
        posterior = model.encode(xb, yb)
        total = None
        for c in range(0, num_samples, chunk):
            z = posterior.rsample(min(chunk, num_samples - c))  # [chunk, batch, latent]
            log_w = model.log_likelihood(xb, model.decode(z, yb)) + standard_normal_log_prob(z) - posterior.log_prob(z)
            part = torch.logsumexp(log_w, dim=0)
            total = part if total is None else torch.logaddexp(total, part)
        out.append(total - math.log(num_samples))
    return torch.cat(out)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def bench_iw(data_root: str, images: int, num_samples: int, epochs: int, seed: int, batch: int = 100) -> dict:
    """Trains the default VAE (784-400-20, ReLU, Bernoulli; Adam 1e-3, batch 128) for ``epochs`` and times
    both estimates on the first ``images`` test images, ``batch`` at a time."""
    from vgae_toolkit.data.images import load_mnist
    from vgae_toolkit.metrics import importance_weighted_log_likelihood
    from vgae_toolkit.models.vae import VAE
    from vgae_toolkit.tasks.image import ImageDensityTask
    from vgae_toolkit.trainer import Trainer

    data = load_mnist(data_root)
    task = ImageDensityTask(data, batch_size=128, binarize="none", val_size=0, iw_samples=0, batch_seed=seed)
    torch.manual_seed(seed)
    model = VAE(**task.model_kwargs(), latent_dim=20, hidden=[400], activation="relu", decoder="bernoulli")
    start = time.perf_counter()
    if epochs:
        Trainer(epochs=epochs, lr=1e-3, progress=False).fit(model, task.train_batches(model))
    train_s = time.perf_counter() - start
    model.eval()
    x = task.sets["test"][0][:images]
    sides = {"ref": lambda xb: reference_iw(model, xb, num_samples=num_samples),
             "ours": lambda xb: importance_weighted_log_likelihood(model, xb, num_samples=num_samples)}
    wall = {side: 0.0 for side in sides}
    cpu = {side: 0.0 for side in sides}
    values: dict[str, list] = {side: [] for side in sides}
    load = [_load()]
    for i, b in enumerate(range(0, len(x), batch)):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for side in order:
            torch.manual_seed(seed * 100_003 + i)  # the same draws for both sides
            t, c = time.perf_counter(), time.process_time()
            values[side].append(sides[side](x[b : b + batch]))
            wall[side] += time.perf_counter() - t
            cpu[side] += time.process_time() - c
    load.append(_load())
    ref, ours = torch.cat(values["ref"]).double(), torch.cat(values["ours"]).double()
    diff = ours - ref
    row = {"images": len(x), "num_samples": num_samples, "train_epochs": epochs, "train_s": train_s,
           "threads": torch.get_num_threads(), "load_before": load[0], "load_after": load[1],
           "ref_log_px": float(ref.mean()), "ours_log_px": float(ours.mean()),
           "diff_mean": float(diff.mean()), "diff_max_abs": float(diff.abs().max())}
    for side in sides:
        row[f"{side}_s"], row[f"{side}_cpu_s"] = wall[side], cpu[side]
        row[f"{side}_full_min"] = wall[side] * FULL_TEST_SET / len(x) / 60
        row[f"{side}_full_cpu_min"] = cpu[side] * FULL_TEST_SET / len(x) / 60
    return row


def render_iw(r: dict) -> list[str]:
    """The section's lines of the report."""
    lines = [f"## Importance-weighted log p(x), K = {r['num_samples']}, MNIST test images", "",
             f"| side | wall s ({r['images']} images) | CPU s | full test set, wall min | full test set, CPU min "
             "| mean log p(x) (nats) |", "|---|---|---|---|---|---|"]
    names = {"ref": "reference: the straightforward loop", "ours": "ours: `importance_weighted_log_likelihood`"}
    for side, name in names.items():
        lines.append(f"| {name} | {r[f'{side}_s']:.1f} | {r[f'{side}_cpu_s']:.1f} | {r[f'{side}_full_min']:.1f} "
                     f"| {r[f'{side}_full_cpu_min']:.1f} | {r[f'{side}_log_px']:.4f} |")
    lines += ["", f"Speed-up {r['ref_s'] / r['ours_s']:.1f}x wall, {r['ref_cpu_s'] / r['ours_cpu_s']:.1f}x CPU. "
              f"Ours - reference on the same draws: {r['diff_mean']:+.1e} nats on average, at most "
              f"{r['diff_max_abs']:.1e} for one image (rounding only). The default VAE (784-400-20, ReLU, "
              f"Bernoulli) after {r['train_epochs']} epoch(s) of Adam 1e-3; batches of 100 images, each side in "
              f"turn with the same seed; the full test set ({FULL_TEST_SET:,} images) extrapolated linearly. "
              f"{r['threads']} torch threads; load average {r['load_before']:.1f} before, {r['load_after']:.1f} "
              "after.", ""]
    return lines
