"""trainer.extend_from: a finished run goes on to more epochs and ends as a run from the first epoch would."""
import json
import logging

import torch
from helpers import CONF, compose_cfg

from vgae_toolkit.run import run

# MaskGAE edge masking on a small graph: masks, negatives and dropout drawn every epoch, evaluated every
# 10 epochs, the best weights selected (the zoo's `best` row extends the MaskGAE edge row this way)
MASKGAE = ["model=maskgae_edge", "dataset=sbm", "dataset.loader.num_nodes=120", "model.hidden=16",
           "model.latent=8", "model.decoder_hidden=[16]", "trainer.progress=false", "node_metrics=false"]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def assert_same_weights(a, b):
    for name in ("last.pt", "best.pt"):
        wa, wb = weights(a / name), weights(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name


def test_an_extended_run_equals_a_run_from_the_first_epoch(tmp_path):
    short = run(compose_cfg(*MASKGAE, "trainer.epochs=20", "trainer.patience=0"), tmp_path / "short")
    assert short["epochs_run"] == 20
    whole = run(compose_cfg(*MASKGAE, "trainer.epochs=40", "trainer.patience=0"), tmp_path / "whole")
    longer = run(compose_cfg(*MASKGAE, "trainer.epochs=40", "trainer.patience=0", "model.name=longer",
                             "trainer.extend_from=../short"), tmp_path / "longer")
    assert longer["extended_after_epoch"] == 20 and longer["extended_from"] == str((tmp_path / "short").resolve())
    assert [r["epoch"] for r in longer["history"]] == list(range(1, 41))
    assert longer["history"] == whole["history"] and longer["test_auc"] == whole["test_auc"]
    assert longer["selected_epoch"] == whole["selected_epoch"] and longer["model"] == "longer"
    assert_same_weights(tmp_path / "whole", tmp_path / "longer")
    # the source is read, never written
    assert metrics(tmp_path / "short")["epochs_run"] == 20 and "extended_from" not in metrics(tmp_path / "short")


def test_a_run_that_patience_stopped_is_its_own_extension(tmp_path):
    cfg = [*MASKGAE, "trainer.eval_every=1", "trainer.patience=2", "trainer.lr=0.1"]
    short = run(compose_cfg(*cfg, "trainer.epochs=60"), tmp_path / "short")
    assert short["epochs_run"] < 60, "patience should have stopped this run"
    longer = run(compose_cfg(*cfg, "trainer.epochs=200", "trainer.extend_from=../short"), tmp_path / "longer")
    whole = run(compose_cfg(*cfg, "trainer.epochs=200"), tmp_path / "whole")
    assert longer["epochs_run"] == whole["epochs_run"] == short["epochs_run"]
    assert longer["history"] == whole["history"] == short["history"]
    assert longer["test_auc"] == whole["test_auc"] == short["test_auc"]
    assert_same_weights(tmp_path / "whole", tmp_path / "longer")


def test_what_cannot_be_extended_trains_from_the_first_epoch(tmp_path, caplog):
    run(compose_cfg(*MASKGAE, "trainer.epochs=15", "trainer.patience=0"), tmp_path / "short")
    cases = [  # another config; a last epoch evaluated only because it was last; fewer epochs
        ("other", ["trainer.lr=0.02", "trainer.epochs=30"], "is a run of another config (trainer.lr: 0.01 -> 0.02)"),
        ("unscheduled", ["trainer.epochs=30"],
         "its last epoch (15) was evaluated only because it was last (trainer.eval_every=10)"),
        ("shorter", ["trainer.epochs=10"], "it ran trainer.epochs=15, more than this run's 10"),
    ]
    for name, overrides, said in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vgae_toolkit.run_folder"):
            got = run(compose_cfg(*MASKGAE, "trainer.patience=0", *overrides, "trainer.extend_from=../short"),
                      tmp_path / name)
        assert "extended_from" not in got and got["epochs_run"] == got["config"]["trainer"]["epochs"], name
        assert said in caplog.text, name
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vgae_toolkit.run_folder"):
        got = run(compose_cfg(*MASKGAE, "trainer.epochs=20", "trainer.extend_from=../nowhere"), tmp_path / "absent")
    assert "extended_from" not in got and "holds no finished run: training from the first epoch" in caplog.text


def test_the_zoo_best_row_extends_the_maskgae_edge_run_beside_it():
    cfg = compose_cfg("+experiment=zoo", "zoo_row=best", "dataset=citeseer", "seed=3")
    edge = compose_cfg("+experiment=zoo", "zoo_row=maskgae_edge", "dataset=citeseer", "seed=3")
    assert cfg.trainer.extend_from == "../maskgae_edge_citeseer_s3"  # the sweep's folder of that job
    from omegaconf import OmegaConf

    from vgae_toolkit.run_folder import EXTENDABLE_KEYS, changed_keys

    changed = changed_keys(OmegaConf.to_container(edge, resolve=True), OmegaConf.to_container(cfg, resolve=True))
    assert set(changed) <= set(EXTENDABLE_KEYS) and changed["trainer.epochs"] == (500, 1000)
    assert 500 % cfg.trainer.eval_every == 0
    order = OmegaConf.load(CONF / "experiment" / "zoo.yaml").hydra.sweeper.params.zoo_row
    rows = order.split(",")
    assert rows.index("best") - rows.index("maskgae_edge") >= 3  # two long jobs between them


def test_a_saved_state_without_an_epoch_count_is_not_trusted(tmp_path, caplog):
    run(compose_cfg(*MASKGAE, "trainer.epochs=10", "trainer.patience=0"), tmp_path / "short")
    ckpt = torch.load(tmp_path / "short" / "last.pt", weights_only=True)
    ckpt["resume"]["epoch"] = "ten"  # a hand-edited or foreign file
    torch.save(ckpt, tmp_path / "short" / "last.pt")
    with caplog.at_level(logging.INFO, logger="vgae_toolkit.run_folder"):
        got = run(compose_cfg(*MASKGAE, "trainer.epochs=20", "trainer.patience=0", "trainer.extend_from=../short"),
                  tmp_path / "longer")
    assert "extended_from" not in got and got["epochs_run"] == 20
    assert "the training state in its last.pt has no epoch count" in caplog.text
