"""split.val_frac=0 or split.test_frac=0: a run without that split still trains, reports and saves."""
import json

import pytest
import torch
from helpers import compose_cfg

import vgae_toolkit.run as run_module
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.run import run

SBM = ["dataset=sbm", "dataset.loader.num_nodes=100", "trainer.epochs=5", "trainer.progress=false"]


def test_no_validation_split_means_no_monitoring(tmp_path):
    metrics = run(compose_cfg(*SBM, "split.val_frac=0"), tmp_path)
    assert metrics["status"] == "complete" and metrics["splits_absent"] == ["val"]
    assert metrics["val_auc"] is None and metrics["val_ap"] is None
    assert 0 <= metrics["test_auc"] <= 1 and metrics["selected_epoch"] == 5
    assert not any(k.startswith("val_") for record in metrics["history"] for k in record)
    assert json.loads((tmp_path / "metrics.json").read_text())["val_auc"] is None
    assert torch.load(tmp_path / "last.pt", weights_only=True)["state_dict"]
    assert not (tmp_path / "best.pt").exists()  # nothing to pick the best epoch by


def test_no_test_split_means_no_test_metrics(tmp_path):
    metrics = run(compose_cfg(*SBM, "split.test_frac=0"), tmp_path)
    assert metrics["status"] == "complete" and metrics["splits_absent"] == ["test"]
    assert metrics["test_auc"] is None and metrics["test_ap"] is None and 0 <= metrics["val_ap"] <= 1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_auc"] is None and saved["splits_absent"] == ["test"]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


def test_both_held_out_splits_absent(tmp_path):
    metrics = run(compose_cfg(*SBM, "split.val_frac=0", "split.test_frac=0"), tmp_path)
    assert metrics["splits_absent"] == ["val", "test"] and metrics["test_auc"] is None
    assert (tmp_path / "last.pt").exists()


def test_select_best_without_validation_is_refused_before_training(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained although the config cannot work")

    monkeypatch.setattr(run_module, "build_model", no_training)
    with pytest.raises(ConfigError, match="trainer.select=best.*split.val_frac=0"):
        run(compose_cfg(*SBM, "split.val_frac=0", "trainer.select=best"), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_all_splits_present_report_none_absent(tmp_path):
    metrics = run(compose_cfg(*SBM), tmp_path)
    assert metrics["splits_absent"] == [] and metrics["test_auc"] is not None
