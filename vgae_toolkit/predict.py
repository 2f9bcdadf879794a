"""Use a trained run: ``python -m vgae_toolkit.predict RUN_DIR [--pairs FILE] [--out DIR]``.

Loads ``best.pt`` (or ``last.pt``) from a run directory with ``weights_only`` loading,
rebuilds the data and the model from the config saved inside the checkpoint, and writes
what the task exports (node embeddings for graphs; latent codes and samples for images)
as ``.npy`` files. With ``--pairs`` (a CSV/TSV whose first two columns are node ids) it
writes link probabilities for those pairs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf.errors import OmegaConfBaseException

from vgae_toolkit.checkpoint import load_checkpoint
from vgae_toolkit.errors import ConfigError, DataError, ToolkitError
from vgae_toolkit.registry import check_untrusted
from vgae_toolkit.run import TASK_BUILDERS, build_model, check_compatible, seed_everything


def load_run(run_dir: str | Path, *, which: str = "best", data_dir: str | None = None):
    """Rebuild ``(task, model, checkpoint)`` from a run directory.

    The config stored in the checkpoint is untrusted: it is refused unless every ``_target_``
    in it is one of the toolkit's own builders (:mod:`vgae_toolkit.registry`).
    """
    run_dir = Path(run_dir)
    path = run_dir / f"{which}.pt"
    if which == "best" and not path.exists():
        path = run_dir / "last.pt"
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    check_untrusted(cfg, str(path))  # before anything in it is built
    try:
        check_compatible(cfg)
        if data_dir is not None:
            cfg.paths.data_dir = data_dir
        seed_everything(int(cfg.seed))  # the same seed rebuilds the same split
    except OmegaConfBaseException as err:  # not a run's config: a key missing or misshapen
        raise ConfigError(f"checkpoint {path}: stored config is not a run's config ({err})") from err
    task = TASK_BUILDERS[cfg.dataset.kind](cfg)
    model = build_model(cfg.model, task)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise DataError(f"checkpoint {path}: weights do not fit the model of its config ({err})") from err
    model.eval()
    return task, model, ckpt


def read_pairs(path: Path) -> list[tuple[str, str]]:
    import pandas as pd

    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, header=None, comment="#")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"pairs file {path}: cannot be read ({err})") from err
    if frame.shape[1] < 2:
        raise DataError(f"pairs file {path}: expected two columns of node ids, got {frame.shape[1]}")
    if not frame.iloc[0, 0].strip().lstrip("-").isdigit() and frame.iloc[0, 0] in ("source", "src", "u", "node1"):
        frame = frame.iloc[1:]  # a header row
    return [(a.strip(), b.strip()) for a, b in zip(frame[0], frame[1])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--which", choices=["best", "last"], default="best")
    parser.add_argument("--pairs", type=Path, help="node pairs to score (CSV/TSV, first two columns)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/predict)")
    parser.add_argument("--data-dir", help="override the data folder recorded in the run")
    args = parser.parse_args(argv)
    try:
        task, model, _ = load_run(args.run_dir, which=args.which, data_dir=args.data_dir)
        out = args.out or args.run_dir / "predict"
        out.mkdir(parents=True, exist_ok=True)
        for name, value in task.embed(model).items():
            np.save(out / f"{name}.npy", value.cpu().numpy())
            print(f"wrote {out / name}.npy {tuple(value.shape)}")
        if args.pairs:
            if not hasattr(task, "score_pairs"):
                raise ConfigError(f"--pairs needs a graph run; {args.run_dir} is a {type(task).__name__}")
            ids = read_pairs(args.pairs)
            pairs = torch.stack([task.node_index([a for a, _ in ids]), task.node_index([b for _, b in ids])])
            probs = task.score_pairs(model, pairs)
            lines = ["source,target,probability"] + [f"{a},{b},{p:.6f}" for (a, b), p in zip(ids, probs.tolist())]
            (out / "scores.csv").write_text("\n".join(lines) + "\n")
            print(f"wrote {out / 'scores.csv'} ({len(ids)} pairs)")
    except ToolkitError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
