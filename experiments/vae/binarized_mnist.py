"""Collects the runs of `make binarized-mnist` (conf/experiment/iwae_burda.yaml) into binarized_mnist.csv.

Burda et al., Importance Weighted Autoencoders, https://arxiv.org/abs/1509.00519, Table 1 (MNIST, one
stochastic layer): one row per finished run, ``model,objective,k_train,test_log_px,epochs,minutes``, where
``test_log_px`` is the run's importance-weighted test log p(x) in nats (``dataset.iw_samples``, K = 5000)
and ``minutes`` the training wall-clock time (the K = 5000 estimate not included).

    python experiments/vae/binarized_mnist.py outputs/vae/binarized_mnist --out experiments/vae/binarized_mnist.csv
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

COLUMNS = ("model", "objective", "k_train", "test_log_px", "epochs", "minutes")
MODEL_NAMES = {"elbo": "VAE", "iwae": "IWAE"}


def collect(sweep_dir: str | Path, iw_samples: int = 5000) -> list[dict]:
    """The rows of the finished runs under ``sweep_dir`` (one folder per run), VAE first, then by k.

    Args:
        sweep_dir (str or Path): the sweep folder (``hydra.sweep.dir``).
        iw_samples (int): the K every run must have estimated log p(x) with (default: 5000, Burda et al.'s).
    """
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("status") != "complete":
            continue
        model = metrics["config"]["model"]
        objective, k = str(model.get("objective", "elbo")), int(model["num_samples"])
        if objective not in MODEL_NAMES or int(metrics["iw_samples"]) != iw_samples:
            raise ValueError(f"{path}: objective {objective!r} with K = {metrics['iw_samples']}; expected "
                             f"one of {sorted(MODEL_NAMES)} with K = {iw_samples}")
        rows.append({"model": MODEL_NAMES[objective], "objective": objective, "k_train": k,
                     "test_log_px": round(float(metrics["test_iw_log_likelihood"]), 2),
                     "epochs": int(metrics["epochs_run"]), "minutes": round(float(metrics["train_seconds"]) / 60, 1)})
    return sorted(rows, key=lambda r: (r["objective"] != "elbo", r["k_train"]))


def write_csv(rows: list[dict], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="the sweep folder of +experiment=iwae_burda")
    parser.add_argument("--out", default="experiments/vae/binarized_mnist.csv")
    parser.add_argument("--iw-samples", type=int, default=5000, help="the K every run must have used")
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir, args.iw_samples)
    if not rows:
        raise SystemExit(f"no finished runs under {args.sweep_dir}")
    print(f"wrote {write_csv(rows, args.out)} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
