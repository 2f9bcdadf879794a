"""make zoo: every row composes, has a report name, and the published numbers parse."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import compose_cfg, options
from vgae_toolkit.report import ROW_NAMES, ROW_ORDER, read_paper, row_name

ROOT = Path(__file__).resolve().parents[1]


def sweep_rows() -> list[str]:
    cfg = OmegaConf.load(ROOT / "conf" / "experiment" / "zoo.yaml")
    return cfg.hydra.sweeper.params.zoo_row.split(",")


def test_the_sweep_runs_every_row_once():
    rows = sweep_rows()
    assert sorted(rows) == sorted(options("zoo_row")) and len(set(rows)) == len(rows) == 14


@pytest.mark.parametrize("row", sorted(options("zoo_row")))
@pytest.mark.parametrize("dataset", ["cora", "citeseer", "pubmed"])
def test_every_row_composes_and_has_a_report_name(row, dataset):
    cfg = compose_cfg("+experiment=zoo", f"zoo_row={row}", f"dataset={dataset}")
    name = row_name(cfg.model.name, cfg.dataset.features)
    assert cfg.model.name in ROW_NAMES and name in ROW_ORDER
    assert cfg.split.seed == cfg.seed and cfg.split.test_graph == "train"  # our protocol
    if cfg.model.name.startswith("maskgae"):  # its code's encoder dropout per dataset
        assert cfg.model.dropout == (0.2 if dataset == "pubmed" else 0.8)


def test_published_numbers_name_zoo_rows():
    paper = read_paper(ROOT / "experiments" / "zoo" / "published.csv")
    assert set(paper["row"]) <= set(ROW_ORDER) and {"MaskGAE edge", "MaskGAE path", "best"} <= set(paper["row"])
    best = paper[(paper.row == "best") & (paper.dataset == "cora") & (paper.metric == "auc")]["mean"].item()
    assert best == 96.45  # the moonshot: the higher of MaskGAE's two published Cora AUCs
