"""Image models choose their own training defaults (trainer=image); presets and overrides still win;
the final importance-weighted estimate shows progress when trainer.progress is on."""
import pytest
import torch
from omegaconf import OmegaConf

from helpers import compose_cfg
from vgae_toolkit.metrics import importance_weighted_log_likelihood
from vgae_toolkit.models.vae import VAE

IMAGE_TRAINER = {"epochs": 12, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "select": "last"}

# What every preset composed to before trainer=image existed (trainer=default plus the preset's own keys).
PRESET_TRAINERS = {
    ("+experiment=vae_modern",): {"epochs": 10, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0,
                                  "monitor": "val_elbo"},
    ("+experiment=vae_modern", "dataset=mnist"): {"epochs": 10, "lr": 1e-3, "optimizer": "adam",
                                                  "weight_decay": 0.0, "monitor": "val_elbo"},
    ("+experiment=vae_paper",): {"epochs": 200, "lr": 0.01, "optimizer": "adagrad", "weight_decay": 7.7e-4,
                                 "monitor": "val_elbo"},
    ("+experiment=vae_paper", "dataset=mnist"): {"epochs": 200, "lr": 0.01, "optimizer": "adagrad",
                                                 "weight_decay": 2.0e-5, "monitor": "val_elbo"},
    ("+experiment=vae_paper", "dataset=freyface"): {"epochs": 200, "lr": 0.01, "optimizer": "adagrad",
                                                    "weight_decay": 6.3e-4, "monitor": "val_elbo"},
    ("+experiment=figure2_mnist",): {"epochs": 200, "lr": 0.01, "optimizer": "adagrad", "weight_decay": 2.0e-5},
    ("+experiment=figure2_freyface",): {"epochs": 62820, "lr": 0.01, "optimizer": "adagrad",
                                        "weight_decay": 6.3e-4, "progress": False},
    ("+experiment=figure4",): {"epochs": 10, "lr": 0.01, "optimizer": "adagrad", "weight_decay": 2.0e-5},
    ("+experiment=figure4", "dataset=freyface"): {"epochs": 500, "lr": 0.01, "optimizer": "adagrad"},
    ("+experiment=figure5",): {"epochs": 10, "lr": 0.01, "optimizer": "adagrad", "weight_decay": 2.0e-5},
}


def trainer_of(*overrides: str) -> dict:
    cfg = compose_cfg(*overrides)
    return OmegaConf.to_container(cfg, resolve=True)["trainer"]


@pytest.mark.parametrize("model", ["vae", "cvae", "vae_paper"])
@pytest.mark.parametrize("dataset", ["mnist", "digits"])
def test_image_models_choose_the_image_trainer(model, dataset):
    trainer = trainer_of(f"model={model}", f"dataset={dataset}")
    assert {k: trainer[k] for k in IMAGE_TRAINER} == IMAGE_TRAINER
    assert trainer["progress"] is True and trainer["_target_"] == "vgae_toolkit.trainer.Trainer"


def test_graph_models_keep_the_graph_trainer():
    trainer = trainer_of("model=vgae", "dataset=cora")
    assert trainer["epochs"] == 200 and trainer["lr"] == 0.01


def test_command_line_overrides_the_image_trainer():
    assert trainer_of("model=vae", "dataset=mnist", "trainer=default")["epochs"] == 200
    assert trainer_of("model=vae", "dataset=mnist", "trainer=default")["lr"] == 0.01
    trainer = trainer_of("model=vae", "dataset=mnist", "trainer.lr=0.02", "trainer.epochs=3")
    assert trainer["lr"] == 0.02 and trainer["epochs"] == 3


@pytest.mark.parametrize("overrides", list(PRESET_TRAINERS), ids=" ".join)
def test_presets_compose_to_the_same_trainer_as_before(overrides):
    trainer = trainer_of(*overrides)
    expected = PRESET_TRAINERS[overrides]
    assert {k: trainer[k] for k in expected} == pytest.approx(expected)
    # and the same as on top of trainer=default, the group every preset was written against
    assert trainer == trainer_of(*overrides, "trainer=default")


def test_paper_presets_keep_k_5000_and_the_plain_run_is_cheap():
    assert compose_cfg("+experiment=vae_paper", "dataset=mnist").dataset.iw_samples == 5000
    assert compose_cfg("+experiment=vae_paper").dataset.iw_samples == 5000
    for dataset in ("mnist", "freyface", "digits", "binarized_mnist", "array"):
        assert compose_cfg("model=vae", f"dataset={dataset}").dataset.iw_samples == 500
    assert compose_cfg("model=vae", "dataset=mnist").dataset.batch_size == 100  # AEVB's M, unchanged
    for figure in ("figure2_mnist", "figure2_freyface", "figure4", "figure5"):
        assert compose_cfg(f"+experiment={figure}").dataset.iw_samples == 0


def _tiny():
    torch.manual_seed(0)
    return VAE(input_dim=6, latent_dim=2, hidden=[4]).eval(), torch.rand(30, 6)


def test_iw_estimate_shows_progress_only_when_asked(capsys):
    model, x = _tiny()
    quiet = importance_weighted_log_likelihood(model, x, num_samples=7, chunk=3, batch_size=10)
    assert "log p(x)" not in capsys.readouterr().err
    torch.manual_seed(0)
    shown = importance_weighted_log_likelihood(model, x, num_samples=7, chunk=3, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "log p(x), K=7" in err and "/30" in err
    assert quiet.shape == shown.shape == (30,)


def test_image_task_passes_trainer_progress_to_the_iw_estimate(monkeypatch):
    from vgae_toolkit.tasks import image

    seen = []

    def fake_iw(model, x, y=None, *, num_samples, progress=False, **kwargs):
        seen.append(progress)
        return torch.zeros(len(x))

    monkeypatch.setattr(image, "importance_weighted_log_likelihood", fake_iw)
    for flag in (True, False):
        cfg = compose_cfg("model=vae", "dataset=digits", f"trainer.progress={str(flag).lower()}",
                          "dataset.iw_samples=3")
        task = image.build_image_task(cfg)
        assert task.progress is flag
        model = VAE(input_dim=task.data.num_features, latent_dim=2, hidden=[4]).eval()
        out = task.evaluate(model, "test")
        assert out["test_iw_log_likelihood"] == 0.0
    assert seen == [True, False]
