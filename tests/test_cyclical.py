"""Cyclical KL annealing (model.kl_cycle_epochs), the KL-dimension count and the collapse experiment's data."""
import gzip

import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.data.images import load_binarized_mnist
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.metrics import kl_dims
from vgae_toolkit.models.vae import VAE
from vgae_toolkit.schema import validate


def weights(epochs=9, **knobs):
    model = VAE(input_dim=4, latent_dim=2, hidden=(3,), **knobs)
    out = []
    for done in range(epochs):  # the callback's count of completed epochs
        model.set_epoch(done)
        out.append(model.kl_weight)
    return out


def test_the_cyclical_schedule():
    # Fu et al. 2019: within each cycle a linear ramp over the first R of it, then 1
    assert weights(kl_cycle_epochs=4) == [0, 0.5, 1, 1, 0, 0.5, 1, 1, 0]
    assert weights(kl_cycle_epochs=4, kl_cycle_ramp=1.0) == [0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 0.75, 0]
    assert weights(5, kl_cycle_epochs=1) == [0] * 5  # a one-epoch cycle is always at its start
    assert weights(kl_cycle_epochs=0, beta=0.3) == [0.3] * 9  # off
    # beta, warm-up and cycle multiply
    expected = [0.5 * min(1, e / 2) * c for e, c in enumerate([0, 0.5, 1, 1, 0, 0.5, 1, 1, 0])]
    assert weights(kl_cycle_epochs=4, kl_warmup_epochs=2, beta=0.5) == pytest.approx(expected)


def test_the_weight_reaches_the_loss():
    torch.manual_seed(0)
    model = VAE(input_dim=6, latent_dim=2, hidden=(4,), kl_cycle_epochs=2)
    batch = {"x": torch.rand(5, 6)}
    model.set_epoch(0)  # the start of a cycle: no KL in the loss
    torch.manual_seed(1)
    out = model.loss(batch)
    torch.testing.assert_close(out["loss"], out["recon"])
    model.set_epoch(1)  # weight 1: the negative ELBO
    torch.manual_seed(1)
    out = model.loss(batch)
    torch.testing.assert_close(out["loss"], out["recon"] + out["kl"])


@pytest.mark.parametrize("knobs", [{"kl_cycle_epochs": -1}, {"kl_cycle_epochs": 4, "kl_cycle_ramp": 0.0},
                                   {"kl_cycle_epochs": 4, "kl_cycle_ramp": 1.5},
                                   {"kl_cycle_epochs": 4, "variational": False}])
def test_bad_cycles_are_refused(knobs):
    with pytest.raises(ConfigError, match="kl_cycle"):
        VAE(input_dim=4, latent_dim=2, hidden=(3,), **knobs)


@pytest.mark.parametrize("override", ["model.kl_cycle_epochs=-2", "model.kl_cycle_ramp=0", "model.kl_cycle_ramp=2",
                                      "model.kl_cycle_epochs=1.5", "model.decoder=pixelcnns",
                                      "dataset.loader.train_size=0"])
def test_the_schema_refuses_bad_values(override):
    cfg = compose_cfg("+experiment=collapse", override)
    with pytest.raises(ConfigError):
        validate(cfg)


def test_the_collapse_preset_composes():
    cfg = compose_cfg("+experiment=collapse", "model.kl_cycle_epochs=4")
    validate(cfg)
    assert cfg.model.decoder == "pixelcnn" and cfg.dataset.name == "binarized_mnist"
    assert cfg.dataset.loader.train_size == 10000 and cfg.model.kl_cycle_ramp == 0.5


def test_kl_dims_counts_dimensions_above_the_threshold():
    kl = torch.tensor([0.05, 0.2, 0.0, 1.0, 0.1])
    assert kl_dims(kl) == 2  # 0.1 itself is not above 0.1
    assert kl_dims(kl, threshold=0.01) == 4


def test_binarized_mnist_keeps_the_first_images(tmp_path):
    folder = tmp_path / "BinarizedMNIST"
    folder.mkdir()
    for split, n in (("train", 5), ("valid", 4), ("test", 3)):
        lines = [" ".join(str(int(k < 100 * j + len(split))) for k in range(784)) for j in range(n)]  # distinct rows
        with gzip.open(folder / f"binarized_mnist_{split}.amat.gz", "wt") as f:
            f.write("\n".join(lines) + "\n")
    full = load_binarized_mnist(tmp_path)
    small = load_binarized_mnist(tmp_path, train_size=2, valid_size=10, test_size=1)
    assert (len(small.train_x), len(small.valid_x), len(small.test_x)) == (2, 4, 1)
    # evenly spaced through each file (the real test file is ordered by digit)
    assert torch.equal(small.train_x, full.train_x[[0, 2]]) and torch.equal(small.test_x, full.test_x[:1])
    assert torch.equal(small.valid_x, full.valid_x)
    with pytest.raises(ConfigError, match="train_size"):
        load_binarized_mnist(tmp_path, train_size=0)
