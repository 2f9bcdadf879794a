"""A run folder holding a finished run is never overwritten by another config."""
import json

import pytest
from helpers import compose_cfg

import vgae_toolkit.run as run_module
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.run import run
from vgae_toolkit.run_folder import config_diff

SMALL = ["dataset=sbm", "dataset.loader.num_nodes=100", "model=gae", "trainer.epochs=3", "trainer.progress=false"]


def no_training(*args, **kwargs):
    raise AssertionError("trained although the folder holds a finished run")


def test_config_diff_names_dotted_keys_and_ignores_what_does_not_change_results():
    old = {"seed": 0, "trainer": {"epochs": 3, "progress": True, "lr": 0.01}, "paths": {"data_dir": "a"},
           "model": {"hidden": [32]}, "skip_finished": True}
    new = {"seed": 0, "trainer": {"epochs": 4, "progress": False, "resume": True}, "paths": {"data_dir": "b"},
           "model": {"hidden": [64]}, "skip_finished": False}
    assert config_diff(old, new) == ["model.hidden: [32] -> [64]", "trainer.epochs: 3 -> 4",
                                     "trainer.lr: 0.01 -> '<absent>'"]
    assert config_diff(old, old) == []
    # a logger or another device writes or runs elsewhere, it computes the same run
    assert config_diff(old, {**old, "logger": {"_target_": "x"}, "trainer": {**old["trainer"], "device": "cuda"}}) == []


def test_a_finished_run_of_another_config_is_refused_before_training(tmp_path, monkeypatch):
    run(compose_cfg(*SMALL), tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    monkeypatch.setattr(run_module, "build_model", no_training)
    for skip in ("true", "false"):
        with pytest.raises(ConfigError) as err:
            run(compose_cfg(*SMALL, "trainer.epochs=4", "model.hidden=16", f"skip_finished={skip}"), tmp_path)
        message = str(err.value)
        assert str(tmp_path) in message and "trainer.epochs: 3 -> 4" in message and "model.hidden: 32 -> 16" in message
        assert "skip_finished" not in message
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_keys_that_do_not_change_the_result_still_skip(tmp_path, monkeypatch):
    first = run(compose_cfg(*SMALL), tmp_path)
    monkeypatch.setattr(run_module, "build_model", no_training)
    again = run(compose_cfg(*SMALL, "trainer.progress=true", f"paths.data_dir={tmp_path / 'elsewhere'}",
                            "trainer.resume=false"), tmp_path)
    assert again == json.loads((tmp_path / "metrics.json").read_text()) and again["test_auc"] == first["test_auc"]


def test_same_config_without_skip_finished_trains_again(tmp_path):
    run(compose_cfg(*SMALL), tmp_path)
    assert len(run(compose_cfg(*SMALL, "skip_finished=false"), tmp_path)["history"]) == 3


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_failed_or_interrupted_run_of_another_config_may_be_replaced(tmp_path, status):
    other = run_module.OmegaConf.to_container(compose_cfg(*SMALL, "trainer.epochs=9"), resolve=True)
    (tmp_path / "metrics.json").write_text(json.dumps({"status": status, "config": other, "history": []}))
    metrics = run(compose_cfg(*SMALL), tmp_path)
    assert metrics["status"] == "complete" and len(metrics["history"]) == 3
