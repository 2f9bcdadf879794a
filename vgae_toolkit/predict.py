"""Use a trained run: ``python -m vgae_toolkit.predict RUN_DIR [--pairs FILE] [--out DIR]``.

Loads ``best.pt`` (or ``last.pt``) from a run directory with ``weights_only`` loading,
rebuilds the data and the model from the config saved inside the checkpoint, and writes
what the task exports (node embeddings for graphs; latent codes and samples for images)
as ``.npy`` files. With ``--pairs`` (a CSV/TSV whose first two columns are node ids) it
writes link probabilities for those pairs to ``scores.csv`` (``source,target,probability``).

Every row of a pairs file is a pair of ids, read as strings exactly as written (``NA``, ``null``
or ``#1`` are ids like any other); a first row of exactly ``source,target`` (the edge-list
loader's default column names) or any first row under ``--header`` is a header.
"""
from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf.errors import OmegaConfBaseException

from vgae_toolkit.checkpoint import load_checkpoint
from vgae_toolkit.errors import ConfigError, DataError, ToolkitError
from vgae_toolkit.graph_input import load_graph
from vgae_toolkit.registry import check_untrusted
from vgae_toolkit.schema import validate
from vgae_toolkit.builders import TASK_BUILDERS, build_model, check_compatible, seed_everything


def load_run(run_dir: str | Path, *, which: str = "best", data_dir: str | None = None, data=None,
             encoder: torch.nn.Module | None = None):
    """Rebuild ``(task, model, checkpoint)`` from a run directory.

    The config stored in the checkpoint is untrusted: it is refused unless every ``_target_``
    in it is one of the toolkit's own builders (:mod:`vgae_toolkit.registry`). A graph handed over
    in Python (``dataset=given``) is read from the run's ``graph.pt`` unless ``data`` is given; a
    run trained with an encoder module needs a module of the same shape as ``encoder``.
    """
    run_dir = Path(run_dir)
    path = run_dir / f"{which}.pt"
    if which == "best" and not path.exists():
        path = run_dir / "last.pt"
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    check_untrusted(cfg, str(path))  # before anything in it is built
    try:
        validate(cfg)  # its values are untrusted too: a wrong type or range is named by key, not hit later
    except ConfigError as err:
        raise ConfigError(f"checkpoint {path}: stored config, {err}") from err
    except (OmegaConfBaseException, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"checkpoint {path}: stored config is not a run's config ({err})") from err
    try:
        check_compatible(cfg)
        if data_dir is not None:
            cfg.paths.data_dir = data_dir
        seed_everything(int(cfg.seed))  # the same seed rebuilds the same split
    except OmegaConfBaseException as err:  # not a run's config: a key missing or misshapen
        raise ConfigError(f"checkpoint {path}: stored config is not a run's config ({err})") from err
    if data is None and (run_dir / "graph.pt").is_file():
        data = load_graph(run_dir / "graph.pt")
    task = TASK_BUILDERS[cfg.dataset.kind](cfg, **({} if data is None else {"data": data}))
    warn_if_data_changed(task, ckpt.get("metrics") or {}, path)  # before the weights, which may not fit then
    model = build_model(cfg.model, task, encoder)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, ValueError, AttributeError) as err:  # wrong keys or shapes, or not a mapping
        raise DataError(f"checkpoint {path}: weights do not fit the model of its config ({err})") from err
    for name, value in model.state_dict().items():  # NaN weights would give NaN predictions without a word
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise DataError(f"checkpoint {path}: weight {name} holds {int((~torch.isfinite(value)).sum())} "
                            f"non-finite value(s); expected the finite weights of a trained model")
    model.eval()
    return task, model, ckpt


class GraphChangedWarning(UserWarning):
    """The graph file a run was trained on has changed since: its split and node ids may differ."""


def warn_if_data_changed(task, metrics: dict, path: Path) -> None:
    """Warns when the rebuilt task's data hash differs from the one the run recorded.

    Args:
        task: the rebuilt task; its ``data.source_sha256`` is set by loaders that read a file.
        metrics (dict): the checkpoint's metrics, with ``data_sha256`` when the run recorded one.
        path (Path): the checkpoint, named in the message.
    """
    recorded = metrics.get("data_sha256") if isinstance(metrics, dict) else None
    current = getattr(getattr(task, "data", None), "source_sha256", None)
    if recorded and current and recorded != current:
        warnings.warn(f"checkpoint {path}: the graph file changed since training (sha256 {recorded[:12]}... then, "
                      f"{current[:12]}... now): the split and node ids may not match the run's",
                      GraphChangedWarning, stacklevel=3)


# The header a pairs file may start with: the edge-list loader's default column names.
PAIRS_HEADER = ("source", "target")


def read_pairs(path: Path, *, header: bool = False) -> list[tuple[str, str]]:
    """Node-id pairs from the first two columns of a CSV (or ``.tsv``/``.tab``) file.

    Ids are strings as written (stripped of surrounding spaces); blank lines are skipped.

    Args:
        path (Path): the pairs file.
        header (bool): the first row is a header whatever it holds; otherwise only a first row
            of exactly ``source,target`` is. (default: ``False``)
    """
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    pairs = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=sep)
            first = True
            for row in reader:
                if not row:
                    continue
                cells = [cell.strip() for cell in row]
                if first:
                    first = False
                    if header or tuple(cells[:2]) == PAIRS_HEADER:
                        continue
                pairs.append(_pair(cells, path, reader.line_num))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"pairs file {path}: cannot be read as {'TSV' if sep != ',' else 'CSV'} ({err})") from err
    if not pairs:
        raise DataError(f"pairs file {path}: no pairs (expected rows of two node ids)")
    return pairs


def _pair(cells: list[str], path: Path, line: int) -> tuple[str, str]:
    if len(cells) < 2:
        raise DataError(f"pairs file {path}, line {line}: expected two columns of node ids, got {len(cells)}")
    if not cells[0] or not cells[1]:
        raise DataError(f"pairs file {path}, line {line}: empty node id in {cells[:2]}; expected two node ids")
    return cells[0], cells[1]


def write_scores(path: Path, ids: list[tuple[str, str]], probs: list[float]) -> None:
    """``source,target,probability`` rows, quoted where an id holds a comma, quote or newline."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["source", "target", "probability"])
        writer.writerows((a, b, f"{p:.6f}") for (a, b), p in zip(ids, probs))


def load_run_reporting(run_dir: Path, **kwargs):
    """:func:`load_run` for the command line: a changed graph file is one line on stderr.

    The line is printed also when loading then fails: weights that no longer fit are the likely
    consequence of a changed file.
    """
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GraphChangedWarning)
            task, model, _ = load_run(run_dir, **kwargs)
    finally:
        for warning in caught:  # ours as one plain line; anything else as Python shows it
            if issubclass(warning.category, GraphChangedWarning):
                print(f"warning: {warning.message}", file=sys.stderr)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return task, model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--which", choices=["best", "last"], default="best")
    parser.add_argument("--pairs", type=Path, help="node pairs to score (CSV/TSV, first two columns)")
    parser.add_argument("--header", action="store_true",
                        help="the pairs file's first row is a header (a first row 'source,target' always is)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/predict)")
    parser.add_argument("--data-dir", help="override the data folder recorded in the run")
    args = parser.parse_args(argv)
    try:
        task, model = load_run_reporting(args.run_dir, which=args.which, data_dir=args.data_dir)
        out = args.out or args.run_dir / "predict"
        if args.pairs:  # a bad pairs file fails before anything is computed or written
            if not hasattr(task, "score_pairs"):
                raise ConfigError(f"--pairs needs a graph run; {args.run_dir} is a {type(task).__name__}")
            ids = read_pairs(args.pairs, header=args.header)
            pairs = torch.stack([task.node_index([a for a, _ in ids]), task.node_index([b for _, b in ids])])
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, value in task.embed(model).items():
                np.save(out / f"{name}.npy", value.cpu().numpy())
                print(f"wrote {out / name}.npy {tuple(value.shape)}")
            if args.pairs:
                write_scores(out / "scores.csv", ids, task.score_pairs(model, pairs).tolist())
                print(f"wrote {out / 'scores.csv'} ({len(ids)} pairs)")
        except OSError as err:  # --out is a file, read-only or on a full disk
            raise DataError(f"--out {out}: cannot write the predictions there ({err.strerror or err}); "
                            f"expected a folder that can be created and written") from err
    except ToolkitError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
