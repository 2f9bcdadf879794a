import json
import math

import pandas as pd
import pytest

from vgae_toolkit.report import collect, compare, layout, main, summarize


def write_run(root, name, **metrics):
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "wall_seconds": 2.0, **metrics}))


@pytest.fixture
def sweep(tmp_path):
    for seed, (auc, ap) in enumerate([(0.90, 0.91), (0.92, 0.95), (0.94, 0.92)]):
        write_run(tmp_path, f"v{seed}", model="vgae", dataset="cora", features=True, seed=seed, test_auc=auc, test_ap=ap)
    write_run(tmp_path, "g0", model="gae", dataset="cora", features=False, seed=0, test_auc=0.80, test_ap=0.85)
    write_run(tmp_path, "s0", model="spectral", dataset="citeseer", seed=0, test_auc=0.8, test_ap=0.9)
    # a killed run and a half-written file are never counted
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "metrics.json").write_text('{"status": "comp')
    write_run(tmp_path, "running", model="vgae", dataset="cora", seed=9, test_auc=0.1, test_ap=0.1, status="running")
    return tmp_path


def test_collect_keeps_finished_runs_and_names_rows(sweep):
    runs = collect(sweep)
    assert len(runs) == 5
    assert sorted(set(runs["row"])) == ["GAE*", "SC", "VGAE"]


def test_mean_and_standard_error_by_hand(sweep):
    summary = summarize(collect(sweep)).set_index(["row", "dataset", "metric"])
    auc = summary.loc[("VGAE", "cora", "auc")]
    assert auc["mean"] == pytest.approx(92.0) and auc["n"] == 3
    assert auc["se"] == pytest.approx(2.0 / math.sqrt(3))  # sd of (90, 92, 94) is 2
    ap = summary.loc[("VGAE", "cora", "ap")]
    assert ap["mean"] == pytest.approx(92.666667) and ap["se"] == pytest.approx(1.2018504)
    assert math.isnan(summary.loc[("GAE*", "cora", "auc")]["se"])  # one seed: no error bar


def test_compare_marks_cells_below_the_paper(sweep):
    paper = pd.DataFrame({"row": ["VGAE", "VGAE", "GAE*"], "dataset": ["cora"] * 3, "metric": ["auc", "ap", "auc"],
                          "mean": [91.4, 92.6, 84.3]})
    table = compare(summarize(collect(sweep)), paper).set_index(["row", "dataset", "metric"])
    assert table.loc[("VGAE", "cora", "auc"), "diff"] == pytest.approx(0.6)
    assert not table.loc[("VGAE", "cora", "auc"), "below"]
    assert table.loc[("GAE*", "cora", "auc"), "below"]  # 80.0 vs 84.3
    wide = layout(compare(summarize(collect(sweep)), paper))
    assert list(wide.index) == ["SC", "GAE*", "VGAE"]
    assert wide.loc["VGAE", "cora AUC"] == "92.0 ± 1.2 (91.4, +0.6)"
    assert "**below**" in wide.loc["GAE*", "cora AUC"]


def test_cli_writes_markdown_csv_latex(sweep, tmp_path, capsys):
    out = tmp_path / "report" / "results"
    main([str(sweep), "--out", str(out)])
    assert "VGAE" in capsys.readouterr().out
    md = out.with_suffix(".md").read_text()
    assert "5 finished" in md and "92.0 ± 1.2" in md
    # the CSV holds the summary numbers: VGAE on Cora, AUC (90, 92, 94) and AP (91, 95, 92), x100
    table = pd.read_csv(out.with_suffix(".csv")).set_index(["row", "dataset", "metric"])
    assert table.loc[("VGAE", "cora", "auc"), "mean"] == pytest.approx(92.0)
    assert table.loc[("VGAE", "cora", "auc"), "se"] == pytest.approx(2.0 / math.sqrt(3))
    assert table.loc[("VGAE", "cora", "ap"), "mean"] == pytest.approx(92.666667)
    assert table.loc[("VGAE", "cora", "auc"), "n"] == 3 and table.loc[("SC", "citeseer", "ap"), "mean"] == 90.0
    # the TeX table has the same cells as the markdown
    tex = out.with_suffix(".tex").read_text()
    assert "\\begin{tabular}" in tex and "92.0 ± 1.2" in tex and "80.0" in tex and "GAE*" in tex
