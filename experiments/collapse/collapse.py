"""Posterior collapse and four remedies (`make collapse`): five runs of ``+experiment=collapse``, a table, a figure.

Each remedy is one run of ``python -m vgae_toolkit +experiment=collapse <its overrides>`` into ``RUNS/<remedy>``
(a finished run there is not trained again: the toolkit's skip_finished); then ``results.csv`` (one row per
remedy) and ``kl_per_epoch.png`` (the training KL and the KL weight per epoch) are written to ``--out``. Usage::

    python experiments/collapse/collapse.py --runs outputs/collapse --out experiments/collapse [overrides ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

# remedy -> the overrides on top of +experiment=collapse (the settings are explained in the README)
REMEDIES = {
    "none": [],
    "warmup": ["model.kl_warmup_epochs=10"],  # KL weight 0, 0.1, ..., 1 over the first ten epochs (Sønderby et al.)
    "free_bits": ["model.free_bits=0.25"],  # 0.25 nats per dimension free: up to 5 nats (Kingma et al. 2016)
    "beta": ["model.beta=0.2"],  # a constant KL weight of 0.2 (beta < 1)
    "cyclical": ["model.kl_cycle_epochs=4"],  # cycles of 4 epochs, ramp R = 0.5 (Fu et al. 2019)
}
COLUMNS = ["remedy", "kl", "active_units", "test_elbo", "test_log_px", "kl_dims", "val_elbo", "final_kl_weight",
           "iw_samples", "test_images", "epochs", "train_seconds", "wall_seconds", "setting"]


def train(remedy: str, runs: Path, extra: list[str]) -> None:
    """Runs one remedy's run into ``runs/<remedy>``; a finished run there is kept (the toolkit skips it)."""
    command = [sys.executable, "-m", "vgae_toolkit", "+experiment=collapse", *REMEDIES[remedy], *extra,
               f"hydra.run.dir={runs / remedy}"]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def kl_weights(config: dict, epochs: int) -> list[float]:
    """The KL weight of each epoch (1-based), from the model's own schedule."""
    from vgae_toolkit.models.vae import VAE

    m = config["model"]
    model = VAE(input_dim=4, latent_dim=1, hidden=(), beta=m["beta"], kl_warmup_epochs=m["kl_warmup_epochs"],
                kl_cycle_epochs=m["kl_cycle_epochs"], kl_cycle_ramp=m["kl_cycle_ramp"])
    weights = []
    for epoch in range(1, epochs + 1):
        model.set_epoch(epoch - 1)  # the callback has told it how many epochs are complete
        weights.append(model.kl_weight)
    return weights


def row(remedy: str, metrics: dict) -> dict:
    history = metrics["history"]
    weights = kl_weights(metrics["config"], len(history))
    return {"remedy": remedy, "kl": round(metrics["test_kl"], 3), "active_units": metrics["active_units"],
            "test_elbo": round(metrics["test_elbo"], 2),
            "test_log_px": round(metrics.get("test_iw_log_likelihood", float("nan")), 2),
            "kl_dims": metrics["kl_dims"], "val_elbo": round(history[-1]["val_elbo"], 2),
            "final_kl_weight": round(weights[-1], 3), "iw_samples": metrics["iw_samples"],
            "test_images": metrics["split_sizes"]["test"], "epochs": len(history),
            "train_seconds": round(metrics["train_seconds"]), "wall_seconds": round(metrics["wall_seconds"]),
            "setting": " ".join(REMEDIES[remedy]) or "-"}


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_kl, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    for remedy, metrics in runs.items():
        epochs = [h["epoch"] for h in metrics["history"]]
        ax_kl.plot(epochs, [h["train_kl"] for h in metrics["history"]], marker="o", ms=3, label=remedy)
        ax_w.plot(epochs, kl_weights(metrics["config"], len(epochs)), marker="o", ms=3, label=remedy)
    ax_kl.axhline(1.0, color="grey", ls="--", lw=1)
    ax_kl.set(yscale="log", xlabel="epoch", ylabel="KL(q(z|x) || p(z)), nats (training mean over the epoch)",
              title="KL per epoch: PixelCNN decoder, binarised MNIST")
    ax_w.set(xlabel="epoch", ylabel="KL weight in the training loss", title="the remedies' KL weight")
    ax_kl.legend()
    ax_w.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/collapse"), help="run directories, one per remedy")
    parser.add_argument("--out", type=Path, default=Path("experiments/collapse"), help="results.csv, kl_per_epoch.png")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for remedy in REMEDIES:
        train(remedy, args.runs, args.overrides)
    runs = {remedy: json.loads((args.runs / remedy / "metrics.json").read_text()) for remedy in REMEDIES}
    rows = [row(remedy, runs[remedy]) for remedy in REMEDIES]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(runs, args.out / "kl_per_epoch.png")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'kl_per_epoch.png'} "
          f"({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
