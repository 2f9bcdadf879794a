"""Collect finished run directories into tables: ``python -m vgae_toolkit.report DIR [DIR ...]``.

Reads only ``metrics.json`` files whose ``status`` is ``complete`` (written last and
atomically by every run), so a killed or running job is never counted.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

# Table 1's row names: * marks runs without node features.
ROW_NAMES = {"spectral": "SC", "deepwalk": "DW", "gae": "GAE", "vgae": "VGAE"}
ROW_ORDER = ["SC", "DW", "GAE*", "VGAE*", "GAE", "VGAE"]
DATASET_ORDER = ["cora", "citeseer", "pubmed"]


def row_name(model: str, features: bool | None) -> str:
    name = ROW_NAMES.get(model, model)
    return f"{name}*" if model in ("gae", "vgae") and features is False else name


def collect(*roots: str | Path) -> pd.DataFrame:
    """One row per finished run under ``roots``: model, dataset, seed, test metrics, time."""
    records = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json")):
            try:
                m = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # unreadable: not a finished run
            if m.get("status") != "complete":
                continue
            records.append({
                "row": row_name(m["model"], m.get("features")), "model": m["model"], "dataset": m["dataset"],
                "features": m.get("features"), "seed": m.get("seed"), "test_auc": m.get("test_auc"),
                "test_ap": m.get("test_ap"), "wall_seconds": m.get("wall_seconds", 0.0), "path": str(path.parent),
            })
    columns = ["row", "model", "dataset", "features", "seed", "test_auc", "test_ap", "wall_seconds", "path"]
    return pd.DataFrame.from_records(records, columns=columns)


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = ("auc", "ap")) -> pd.DataFrame:
    """Mean and standard error (x100) per row, dataset and metric; ``n`` = number of seeds."""
    out = []
    for (row, dataset), group in runs.groupby(["row", "dataset"], sort=False):
        for metric in metrics:
            values = group[f"test_{metric}"].dropna().astype(float) * 100
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
    ours = f"{r['mean']:.1f} ± {r['se']:.1f}" if not math.isnan(r["se"]) else f"{r['mean']:.1f}"
    if math.isnan(r["paper"]):
        return ours
    flag = " **below**" if r["below"] else ""
    return f"{ours} ({r['paper']:.1f}, {r['diff']:+.1f}){flag}"


def layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's layout: rows SC..VGAE, columns dataset x (AUC, AP); cells 'ours ± se (paper, diff)'."""
    cells = table.assign(cell=table.apply(_cell, axis=1))
    wide = cells.pivot(index="row", columns=["dataset", "metric"], values="cell")
    rows = [r for r in ROW_ORDER if r in wide.index] + sorted(r for r in wide.index if r not in ROW_ORDER)
    cols = [(d, m) for d in DATASET_ORDER + sorted(set(cells["dataset"]) - set(DATASET_ORDER))
            for m in ("auc", "ap") if (d, m) in wide.columns]
    wide = wide.loc[rows, cols].fillna("—")
    wide.columns = [f"{d} {m.upper()}" for d, m in cols]
    return wide


def write_report(runs: pd.DataFrame, paper: pd.DataFrame | None, out: Path, header: str = "") -> dict[str, Path]:
    """Write ``out``.md, .csv and .tex; returns their paths."""
    table = compare(summarize(runs), paper)
    wide = layout(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = runs.groupby(["row", "dataset"]).size()
    lines = [header, "", wide.to_markdown(), "",
             f"Cells: our mean ± standard error over seeds (x100), then (paper, difference); "
             f"**below** marks a cell more than 1 point under the paper.",
             f"Runs: {len(runs)} finished ({seeds.min() if len(seeds) else 0}-{seeds.max() if len(seeds) else 0} "
             f"seeds per cell); summed run time {runs['wall_seconds'].sum() / 60:.1f} min.", ""]
    paths = {"md": out.with_suffix(".md"), "csv": out.with_suffix(".csv"), "tex": out.with_suffix(".tex")}
    paths["md"].write_text("\n".join(lines))
    table.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(wide.to_latex())
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="run or sweep directories to search for metrics.json")
    parser.add_argument("--paper", type=Path, help="CSV of paper numbers (row,dataset,metric,mean,sd)")
    parser.add_argument("--out", type=Path, help="write OUT.md, OUT.csv and OUT.tex")
    args = parser.parse_args(argv)
    runs = collect(*args.roots)
    if runs.empty:
        parser.exit(1, f"no finished runs (metrics.json with status complete) under {', '.join(args.roots)}\n")
    paper = pd.read_csv(args.paper) if args.paper else None
    print(layout(compare(summarize(runs), paper)).to_string())
    if args.out:
        for path in write_report(runs, paper, args.out).values():
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
