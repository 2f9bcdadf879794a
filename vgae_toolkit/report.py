"""Collect finished run directories into tables: ``python -m vgae_toolkit.report DIR [DIR ...]``.

Reads only ``metrics.json`` files whose ``status`` is ``complete`` (written last and
atomically by every run), so a killed or running job is never counted. A cell averages the
seeds of one row (model and features), one dataset (its name, or the hash of its files) and one
config: copies of a run count once, and the files that are not a run record are listed, not read.
These files are data: nothing in them is built or imported.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vgae_toolkit.errors import DataError, ToolkitError
from vgae_toolkit.schema import RESULT_NEUTRAL_KEYS, result_key

# Table 1's row names: * marks runs without node features.
ROW_NAMES = {"spectral": "SC", "deepwalk": "DW", "gae": "GAE", "vgae": "VGAE",
             # the zoo's rows (conf/zoo_row)
             "linear_gae": "Linear GAE", "linear_vgae": "Linear VGAE", "arga": "ARGA", "argva": "ARGVA",
             "gae_gat": "GAE (GAT)", "gae_sage": "GAE (SAGE)", "maskgae_edge": "MaskGAE edge",
             "maskgae": "MaskGAE path", "s2gae": "S2GAE", "best": "best"}
ROW_ORDER = ["SC", "DW", "GAE*", "VGAE*", "GAE", "VGAE", "Linear GAE", "Linear VGAE", "ARGA", "ARGVA",
             "GAE (GAT)", "GAE (SAGE)", "MaskGAE edge", "MaskGAE path", "S2GAE", "best"]
DATASET_ORDER = ["cora", "citeseer", "pubmed"]


def row_name(model: str, features: bool | None) -> str:
    name = ROW_NAMES.get(model, model)
    return f"{name}*" if model in ("gae", "vgae") and features is False else name


# The keys that do not change a run's result (vgae_toolkit/schema.py), and ``seed``: the
# replicate, counted by the cells rather than splitting them.
IGNORED_KEYS = ("seed", *RESULT_NEUTRAL_KEYS)
# Keys naming data files: where a run recorded the files' hash, the hash is their identity.
DATA_FILE_KEYS = ("dataset.loader.path", "dataset.loader.features")
COLUMNS = ["row", "model", "dataset", "features", "seed", "test_auc", "test_ap", "wall_seconds", "path"]


@dataclass
class Scan:
    """What :func:`scan` found: the runs, the copies it dropped and the files it could not use.

    Attributes:
        runs (DataFrame): one row per distinct finished run (columns :data:`COLUMNS`).
        duplicates (list): ``(dropped, kept)`` run directories of the same config and seed.
        skipped (list): ``(metrics.json path, reason)`` of files that are not a readable run record.
    """

    runs: pd.DataFrame
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_record(m) -> dict | str | None:
    """The fields a report uses from one parsed ``metrics.json``.

    Returns a dict for a finished run, ``None`` for an unfinished one, and the reason as a string
    for a record of the wrong shape. Nothing in it is built or imported: it is plain data.
    """
    if not isinstance(m, dict):
        return f"not a JSON object (a {type(m).__name__})"
    if m.get("status") != "complete":
        return None
    checks = [
        ("model", isinstance(m.get("model"), str) and m.get("model"), "a model name"),
        ("dataset", isinstance(m.get("dataset"), str) and m.get("dataset"), "a dataset name"),
        ("features", m.get("features") is None or isinstance(m["features"], bool), "true, false or absent"),
        ("seed", m.get("seed") is None or (isinstance(m["seed"], int) and not isinstance(m["seed"], bool)),
         "an integer"),
        ("config", m.get("config") is None or isinstance(m["config"], dict), "a mapping"),
        ("data_sha256", m.get("data_sha256") is None or isinstance(m["data_sha256"], str), "a string"),
        *((key, m.get(key) is None or _is_number(m[key]), "a number")
          for key in ("test_auc", "test_ap", "wall_seconds")),
    ]
    for key, ok, expected in checks:
        if not ok:
            return f"{key}: expected {expected}, got {json.dumps(m.get(key))[:40]}"
    # every other numeric test score (Hits@K, MRR, clustering, probe) is carried along for --metrics
    scores = {k: v for k, v in m.items() if k.startswith("test_") and _is_number(v)}
    return {**scores, "row": row_name(m["model"], m.get("features")), "model": m["model"], "dataset": m["dataset"],
            "features": m.get("features"), "seed": m.get("seed"), "test_auc": m.get("test_auc"),
            "test_ap": m.get("test_ap"), "wall_seconds": m.get("wall_seconds") or 0.0,
            "data_sha256": m.get("data_sha256"), "config": flatten(m.get("config") or {})}


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys to JSON-encoded leaf values: ``{"model": {"hidden": 8}}`` -> ``{"model.hidden": "8"}``."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out


def identity(record: dict) -> dict[str, str]:
    """The config keys that decide a run's result: the config less :data:`IGNORED_KEYS`."""
    ignored = IGNORED_KEYS + (DATA_FILE_KEYS if record["data_sha256"] else ())
    return {k: v for k, v in record["config"].items() if result_key(k, ignored)}


def scan(*roots: str | Path) -> Scan:
    """Every finished run under ``roots``, once per (row, data, config, seed), with a cell label each.

    Runs of one dataset name but different data files (``data_sha256``) get the label
    ``name[hash prefix]``; runs of one row and dataset whose configs differ get the row label
    ``ROW [key=value, ...]`` naming the keys that differ.
    """
    records, skipped = [], []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json")):
            try:
                record = parse_record(json.loads(path.read_text()))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:  # ValueError: bad JSON
                record = f"not readable as a JSON run record ({type(err).__name__})"
            if isinstance(record, str):
                skipped.append((str(path), record))
            elif record is not None:
                records.append({**record, "path": str(path.parent)})
    records, duplicates = _dedupe(records)
    _label_datasets(records)
    _label_configs(records)
    scores = sorted({k for r in records for k in r if k.startswith("test_")} - set(COLUMNS))
    return Scan(pd.DataFrame.from_records(records, columns=COLUMNS + scores), duplicates, skipped)


def collect(*roots: str | Path) -> pd.DataFrame:
    """One row per distinct finished run under ``roots`` (see :func:`scan`): row, dataset, seed, metrics, time."""
    return scan(*roots).runs


def _dedupe(records: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    # a copied run folder is the same run: one seed, not two
    kept, seen, duplicates = [], {}, []
    for record in records:
        key = (record["row"], record["dataset"], record["data_sha256"], record["seed"],
               json.dumps(identity(record), sort_keys=True))
        if key in seen:
            duplicates.append((record["path"], seen[key]))
        else:
            seen[key] = record["path"]
            kept.append(record)
    return kept, duplicates


def _label_datasets(records: list[dict]) -> None:
    hashes: dict[str, set] = {}
    for record in records:
        hashes.setdefault(record["dataset"], set()).add(record["data_sha256"])
    for record in records:
        if len(hashes[record["dataset"]]) > 1:
            record["dataset"] = f"{record['dataset']}[{(record['data_sha256'] or 'no hash')[:6]}]"


def _label_configs(records: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["config"]:  # a record without a config cannot be told apart: it keeps the row's name
            groups.setdefault((record["row"], record["dataset"]), []).append(record)
    varying: dict[str, set] = {}  # per row: the keys whose values differ within one of its cells
    for (row, _), group in groups.items():
        seed_like = _seed_like(group)
        for record in group:
            record["identity"] = {k: v for k, v in identity(record).items() if k not in seed_like}
        keys = set().union(*(r["identity"] for r in group))
        varying.setdefault(row, set()).update(k for k in keys if len({r["identity"].get(k) for r in group}) > 1)
    for record in records:
        ident = record.pop("identity", {})
        shown = [f"{k}={_show(ident[k])}" for k in sorted(varying.get(record["row"], ())) if k in ident]
        if shown:
            record["row"] = f"{record['row']} [{', '.join(shown)}]"


def _seed_like(group: list[dict]) -> set[str]:
    # keys such as split.seed that follow the run's seed in every run of the cell are replicates too
    names = {k for r in group for k in r["config"] if k.endswith(".seed")}
    return {k for k in names if all(r["config"].get(k) == json.dumps(r["seed"]) for r in group)}


def _show(value: str) -> str:
    parsed = json.loads(value)
    return parsed if isinstance(parsed, str) else value


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = ("auc", "ap")) -> pd.DataFrame:
    """Mean and standard error (x100) per row, dataset and metric; ``n`` = number of seeds.

    ``metrics`` name test scores of ``metrics.json`` without the ``test_`` prefix (``auc``, ``ap``,
    ``hits_at_20``, ``mrr``, ``cluster_acc``, ``probe_acc``, ...); a run without one is not counted in it.
    """
    out = []
    for (row, dataset), group in runs.groupby(["row", "dataset"], sort=False):
        for metric in metrics:
            column = f"test_{metric}"
            values = (group[column] if column in group else pd.Series(dtype=float)).dropna().astype(float) * 100
            n = len(values)
            sem = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
            out.append({"row": row, "dataset": dataset, "metric": metric, "mean": float(values.mean()),
                        "se": sem, "n": n})
    return pd.DataFrame(out, columns=["row", "dataset", "metric", "mean", "se", "n"])


def compare(summary: pd.DataFrame, paper: pd.DataFrame | None, tolerance: float = 1.0) -> pd.DataFrame:
    """Join our summary with the paper's numbers: difference and a flag below ``paper - tolerance``."""
    table = summary.copy()
    if paper is None:
        table["paper"] = float("nan")
    else:
        table = table.merge(paper[["row", "dataset", "metric", "mean"]].rename(columns={"mean": "paper"}),
                            on=["row", "dataset", "metric"], how="left")
    table["diff"] = table["mean"] - table["paper"]
    table["below"] = table["diff"] < -tolerance
    table["below_paper"] = table["diff"] < 0
    return table


def _cell(r) -> str:
    if math.isnan(r["mean"]):  # no run of the cell recorded this metric
        return "—"
    ours = f"{r['mean']:.1f} ± {r['se']:.1f}" if not math.isnan(r["se"]) else f"{r['mean']:.1f}"
    if math.isnan(r["paper"]):
        return ours
    flag = " **below**" if r["below"] else ""
    return f"{ours} ({r['paper']:.1f}, {r['diff']:+.1f}){flag}"


def _row_order(row: str) -> tuple:
    # a config variant such as 'GAE [model.hidden=8]' sits with its row
    base = row.split(" [", 1)[0]
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", row)]  # 8 before 64
    return (ROW_ORDER.index(base) if base in ROW_ORDER else len(ROW_ORDER), base, natural)


def layout(table: pd.DataFrame, metrics: tuple[str, ...] = ("auc", "ap")) -> pd.DataFrame:
    """The paper's layout: rows SC..VGAE, columns dataset x metric (AUC, AP); cells 'ours ± se (paper, diff)'."""
    cells = table.assign(cell=table.apply(_cell, axis=1))
    wide = cells.pivot(index="row", columns=["dataset", "metric"], values="cell")
    rows = sorted(wide.index, key=_row_order)
    cols = [(d, m) for d in DATASET_ORDER + sorted(set(cells["dataset"]) - set(DATASET_ORDER))
            for m in metrics if (d, m) in wide.columns]
    wide = wide.loc[rows, cols].fillna("—")
    wide.columns = [f"{d} {m.upper()}" for d, m in cols]
    return wide


def notes(found: Scan) -> list[str]:
    """Lines on the copies dropped and the files skipped by :func:`scan` (none when there were none)."""
    lines = []
    if found.duplicates:
        lines.append(f"Dropped {len(found.duplicates)} duplicate run(s) (the same config and seed as a kept run):")
        lines += [f"- {dropped} (same as {kept})" for dropped, kept in found.duplicates]
    if found.skipped:
        lines.append(f"Skipped {len(found.skipped)} metrics.json file(s) that are not a run record:")
        lines += [f"- {path}: {reason}" for path, reason in found.skipped]
    return lines


def write_report(runs: pd.DataFrame, paper: pd.DataFrame | None, out: Path, header: str = "",
                 extra: list[str] | tuple[str, ...] = (), metrics: tuple[str, ...] = ("auc", "ap")) -> dict[str, Path]:
    """Write ``out``.md, .csv and .tex; returns their paths.

    Args:
        runs (DataFrame): from :func:`collect`.
        paper (DataFrame, optional): the paper's numbers.
        out (Path): the path without suffix.
        header (str): markdown put above the table.
        extra (list of str): lines put under it (e.g. :func:`notes`).
        metrics (tuple of str): the test scores to tabulate (see :func:`summarize`).
    """
    table = compare(summarize(runs, metrics), paper)
    wide = layout(table, metrics)
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = runs.groupby(["row", "dataset"]).size()
    lines = [header, "", wide.to_markdown(), "",
             f"Cells: our mean ± standard error over seeds (x100), then (paper, difference); "
             f"**below** marks a cell more than 1 point under the paper.",
             f"Runs: {len(runs)} finished ({seeds.min() if len(seeds) else 0}-{seeds.max() if len(seeds) else 0} "
             f"seeds per cell); summed run time {runs['wall_seconds'].sum() / 60:.1f} min.", "", *extra]
    paths = {"md": out.with_suffix(".md"), "csv": out.with_suffix(".csv"), "tex": out.with_suffix(".tex")}
    paths["md"].write_text("\n".join(lines).rstrip("\n") + "\n")
    table.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(wide.to_latex())
    return paths


PAPER_COLUMNS = ("row", "dataset", "metric", "mean")


def read_paper(path: Path) -> pd.DataFrame:
    """The paper's numbers: a CSV with columns ``row,dataset,metric,mean`` (and optionally ``sd``).

    Raises:
        DataError: the file cannot be read, lacks a column, holds a mean that is not a number, or
            gives one (row, dataset, metric) twice; the message names the file and the line.
    """
    try:
        paper = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.EmptyDataError) as err:  # parser and decoding errors too
        raise DataError(f"--paper {path}: cannot be read as a CSV table ({type(err).__name__}: {err}); "
                        f"expected columns {','.join(PAPER_COLUMNS)},sd") from err
    paper.columns = [str(c).strip() for c in paper.columns]
    missing = [c for c in PAPER_COLUMNS if c not in paper.columns]
    if missing:
        raise DataError(f"--paper {path}: no column(s) {missing}; columns are {list(paper.columns)}, expected "
                        f"{','.join(PAPER_COLUMNS)},sd")
    paper = paper.apply(lambda column: column.str.strip())
    paper.index = paper.index + 2  # line numbers: line 1 is the header
    means = pd.to_numeric(paper["mean"], errors="coerce")
    if means.isna().any():
        line = means.index[means.isna()][0]
        raise DataError(f"--paper {path}, line {line}: mean {paper['mean'][line]!r} is not a number")
    repeated = paper.duplicated(list(PAPER_COLUMNS[:3]), keep=False)
    if repeated.any():
        lines = paper.index[repeated].tolist()
        raise DataError(f"--paper {path}, lines {lines}: the same row, dataset and metric more than once; "
                        f"keep one line each")
    paper = paper.assign(mean=means.astype(float))
    if "sd" in paper.columns:  # shown by no table; kept as a number where it is one
        paper["sd"] = pd.to_numeric(paper["sd"], errors="coerce")
    return paper.reset_index(drop=True)


def check_roots(roots: list[str]) -> None:
    """Every root must be an existing folder: a misspelt one would otherwise just hold no runs."""
    for root in roots:
        path = Path(root)
        if not path.exists():
            raise DataError(f"{root}: no such folder; expected a run or sweep folder holding metrics.json files")
        if not path.is_dir():
            raise DataError(f"{root}: is a file, not a folder; expected a run or sweep folder holding "
                            f"metrics.json files")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="run or sweep directories to search for metrics.json")
    parser.add_argument("--paper", type=Path, help="CSV of paper numbers (row,dataset,metric,mean,sd)")
    parser.add_argument("--out", type=Path, help="write OUT.md, OUT.csv and OUT.tex")
    parser.add_argument("--metrics", default="auc,ap", type=lambda text: tuple(m.strip() for m in text.split(",")),
                        help="comma-separated test scores of metrics.json, without test_ (default: auc,ap; also "
                             "hits_at_20, hits_at_50, hits_at_100, mrr, cluster_acc, cluster_nmi, cluster_ari, "
                             "probe_acc)")
    args = parser.parse_args(argv)
    try:
        check_roots(args.roots)
        paper = read_paper(args.paper) if args.paper else None  # before the scan: a bad file fails at once
        found = scan(*args.roots)
        lines = notes(found)
        if found.runs.empty:
            parser.exit(1, "\n".join([f"no finished runs (metrics.json with status complete) under "
                                      f"{', '.join(args.roots)}", *lines, ""]))
        print(layout(compare(summarize(found.runs, args.metrics), paper), args.metrics).to_string())
        if args.out:
            try:
                written = write_report(found.runs, paper, args.out, extra=lines, metrics=args.metrics)
            except OSError as err:  # a read-only place, a folder where a file goes, a full disk
                raise DataError(f"--out {args.out}: cannot write the report there ({err.strerror or err}: "
                                f"{err.filename or args.out}); expected a writable path") from err
            for path in written.values():
                print(f"wrote {path}")
        if lines:  # last, where a reader of the output looks
            print("\n".join(lines))
    except ToolkitError as err:  # a named, expected failure: one line, no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
