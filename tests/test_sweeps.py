"""Sweeps that tune: the entry point returns the monitored validation value, an Optuna search runs,
and a sweep's folders name the values each job tried."""
import json
import math
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir

import vgae_toolkit.__main__ as entry
from helpers import CONF, compose_cfg
from vgae_toolkit.run import run

TINY = ["dataset=sbm", "dataset.loader.num_nodes=100", "trainer.epochs=2", "trainer.progress=false"]


def optuna_installed() -> bool:
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
    except ImportError:
        return False
    return True


needs_optuna = pytest.mark.skipif(not optuna_installed(), reason="hydra-optuna-sweeper not installed (extra sweeps)")


def run_entry(monkeypatch, tmp_path, *overrides):
    """The Hydra entry on a composed config (its pass-through form), writing into ``tmp_path``."""
    monkeypatch.setattr(entry, "run", lambda cfg: run(cfg, tmp_path / "run"))
    value = entry.main(compose_cfg(*TINY, *overrides))
    return value, json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_entry_returns_the_monitored_validation_value(monkeypatch, tmp_path):
    value, metrics = run_entry(monkeypatch, tmp_path)
    assert type(value) is float and value == metrics["val_ap"]  # monitor=auto: a link run's AP


def test_entry_returns_an_explicit_monitor(monkeypatch, tmp_path):
    value, metrics = run_entry(monkeypatch, tmp_path, "trainer.monitor=val_auc")
    assert value == metrics["val_auc"]


def test_entry_returns_nan_without_a_validation_split(monkeypatch, tmp_path):
    value, metrics = run_entry(monkeypatch, tmp_path, "split.val_frac=0")
    assert math.isnan(value) and metrics["val_ap"] is None


def test_auto_monitor_of_an_image_run_is_the_elbo():
    cfg = compose_cfg("model=vae", "dataset=digits")
    assert entry.monitored(cfg, {"val_elbo": -90.5, "val_loss": 3.0}) == -90.5


@needs_optuna
def test_optuna_search_space_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_.endswith("TPESampler") and sweeper.sampler.seed == cfg.seed
    assert set(sweeper.params) == {"trainer.lr", "model.hidden", "model.dropout"}


def cli(tmp_path, *args):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vgae_toolkit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "out" / "multirun").iterdir()
    return sweep


@pytest.mark.slow
@needs_optuna
def test_optuna_sweep_tunes_and_reports_the_best_trial(tmp_path):
    sweep = cli(tmp_path, "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert isinstance(results["best_value"], float) and set(results["best_params"]) == {
        "trainer.lr", "model.hidden", "model.dropout"}
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 3
    values = [json.loads((job / "metrics.json").read_text())["val_ap"] for job in jobs]
    assert results["best_value"] == max(values)
    for job in jobs:  # each folder names the values its trial tried
        assert job.name.startswith(tuple(f"{i}_vgae_sbm_s0_" for i in range(3)))
        assert "model.hidden=" in job.name and "trainer.lr=" in job.name and "model.dropout=" in job.name


@pytest.mark.slow
def test_sweep_folders_name_the_swept_values(tmp_path):
    sweep = cli(tmp_path, "-m", "model.hidden=8,16", *TINY)
    jobs = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert jobs == ["0_vgae_sbm_s0_dataset.loader.num_nodes=100,model.hidden=8,trainer.epochs=2",
                    "1_vgae_sbm_s0_dataset.loader.num_nodes=100,model.hidden=16,trainer.epochs=2"]
    widths = [json.loads((sweep / job / "metrics.json").read_text())["config"]["model"]["hidden"] for job in jobs]
    assert widths == [8, 16]
