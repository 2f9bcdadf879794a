import itertools
import json

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from helpers import compose_cfg, options
from vgae_toolkit.errors import ConfigError, DataError, TrainingError
from vgae_toolkit.run import run


def test_every_config_combination_composes():
    groups = ["dataset", "model", "split", "trainer"]
    combos = list(itertools.product(*(options(g) for g in groups)))
    assert len(combos) >= 10
    for combo in combos:
        cfg = compose_cfg(*(f"{g}={o}" for g, o in zip(groups, combo)))
        # every value resolves (no dangling interpolation); ??? marks a value the user must give
        container = OmegaConf.to_container(cfg, resolve=True)
        assert container["dataset"]["name"] == combo[0] and container["model"]["name"] == combo[1]
        assert cfg.model.kind in ("graph", "image") and cfg.dataset.kind in ("graph", "image")


def test_misspelt_option_and_key_fail_at_composition():
    with pytest.raises(MissingConfigException, match="dataset/coraa"):
        compose_cfg("dataset=coraa")
    with pytest.raises(ConfigCompositionException, match="hiden"):
        compose_cfg("model.hiden=64")


def test_incompatible_model_and_dataset(tmp_path):
    cfg = compose_cfg("dataset=sbm", "model.kind=image")
    with pytest.raises(ConfigError, match="model=vgae is a image model but dataset=sbm is a graph dataset"):
        run(cfg, tmp_path)


def test_missing_data_dir_is_a_data_error(tmp_path):
    cfg = compose_cfg("dataset=cora", f"paths.data_dir={tmp_path / 'nowhere'}", "paths.download=false")
    with pytest.raises(DataError, match="not found in"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def small_run(tmp_path, name, *overrides):
    cfg = compose_cfg("dataset=sbm", "dataset.loader.num_nodes=300", "trainer.epochs=15",
                      "trainer.progress=false", *overrides)
    return run(cfg, tmp_path / name)


def test_run_directory_describes_itself(tmp_path):
    metrics = small_run(tmp_path, "a", "model=gae")
    written = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert written["status"] == "complete" and written == json.loads(json.dumps(metrics, default=float))
    for key in ("model", "dataset", "seed", "features", "split_sizes", "selected_epoch", "val_auc", "val_ap",
                "test_auc", "test_ap", "wall_seconds", "config", "recon", "kl_weight"):
        assert key in written, key
    assert written["model"] == "gae" and written["dataset"] == "sbm" and written["features"] is True
    assert len(written["history"]) == 15 and "val_ap" in written["history"][0] and "test_auc" not in written["history"][0]
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert {"best.pt", "last.pt"} <= {p.name for p in (tmp_path / "a").iterdir()}


def test_same_seed_is_bit_for_bit_reproducible(tmp_path):
    a, b = small_run(tmp_path, "a", "seed=1"), small_run(tmp_path, "b", "seed=1")
    c = small_run(tmp_path, "c", "seed=2")
    assert a["history"] == b["history"] and a["test_ap"] == b["test_ap"]
    assert a["history"] != c["history"]


def test_featureless_and_best_epoch_selection(tmp_path):
    m = small_run(tmp_path, "a", "dataset.features=false", "trainer.select=best", "trainer.epochs=20")
    assert m["features"] is False
    best = max(h["val_ap"] for h in m["history"])
    assert m["val_ap"] == best and m["history"][m["selected_epoch"] - 1]["val_ap"] == best


def test_non_finite_loss_stops_with_a_record(tmp_path):
    with pytest.raises(TrainingError, match="non-finite loss .* at epoch 1"):
        small_run(tmp_path, "nan", "model.kl_weight=1e308")
    record = json.loads((tmp_path / "nan" / "metrics.json").read_text())
    assert record["status"] == "failed" and "non-finite" in record["error"]


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not writable"):
        run(compose_cfg("dataset=karate"), tmp_path / "file" / "run")
