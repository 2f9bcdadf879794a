"""The IWAE objective (Burda et al., https://arxiv.org/abs/1509.00519): the loss against a hand-written bound,
its tightness over the ELBO, the combinations it refuses, and the Table 1 preset with its collector."""
import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from helpers import CONF, compose_cfg
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import standard_normal_log_prob
from vgae_toolkit.models.vae import VAE
from vgae_toolkit.run import run
from vgae_toolkit.schema import validate

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kwargs) -> VAE:
    torch.manual_seed(0)
    return VAE(input_dim=12, latent_dim=3, hidden=[8], activation="tanh", **kwargs).double()


def binary(rows: int = 6) -> torch.Tensor:
    return (torch.rand(rows, 12, generator=torch.Generator().manual_seed(1)) < 0.4).double()


def log_weights(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x|z_k) + log N(z_k; 0, I) - log q(z_k|x), written out from the model's parts: ``[k, batch]``."""
    posterior = model.encode(x)
    z = posterior.rsample(k)
    return model.log_likelihood(x, model.decode(z)) + standard_normal_log_prob(z) - posterior.log_prob(z)


@pytest.mark.parametrize("k", [1, 3])
def test_iwae_loss_is_the_negative_importance_weighted_bound(k):
    model, x = tiny(objective="iwae", num_samples=k), binary()
    torch.manual_seed(7)
    out = model.loss({"x": x})
    torch.manual_seed(7)  # the same draws z_k
    log_w = log_weights(model, x, k)  # [k, batch]
    # k = 1: minus the single-sample ELBO estimate; k > 1: minus log of the mean weight (not the mean log weight)
    expected = -torch.log(log_w.exp().mean(0)).mean()
    torch.testing.assert_close(out["loss"], expected, rtol=1e-10, atol=1e-10)
    if k == 1:
        torch.testing.assert_close(out["loss"], -log_w.mean(), rtol=1e-10, atol=1e-10)
    # recon and kl stay the ELBO's terms, batch means, for the logs
    torch.manual_seed(7)
    posterior = model.encode(x)
    log_px = model.log_likelihood(x, model.decode(posterior.rsample(k)))
    torch.testing.assert_close(out["recon"], -log_px.mean())
    torch.testing.assert_close(out["kl"], posterior.kl().mean())
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_iwae_bound_is_above_the_elbo_on_average():
    x = binary(40)
    elbo_model, iwae_model = tiny(), tiny(objective="iwae", num_samples=50)  # the same weights
    with torch.no_grad():  # a sharper decoder, so that the untrained encoder is a poor proposal
        for model in (elbo_model, iwae_model):
            for p in model.decoder.parameters():
                p.mul_(4.0)
    torch.manual_seed(3)
    with torch.no_grad():
        elbo = torch.stack([-elbo_model.loss({"x": x})["loss"] for _ in range(20)]).mean()
        iwae = torch.stack([-iwae_model.loss({"x": x})["loss"] for _ in range(20)]).mean()
    # Burda et al. Theorem 1: L_k >= L_1, with a gap of nats here (the mean of 20 draws varies by ~0.1)
    assert iwae > elbo + 1.0, (iwae, elbo)
    # and it is still a lower bound: below a direct estimate of log p(x) with many more samples
    torch.manual_seed(4)
    with torch.no_grad():
        log_px = (torch.logsumexp(log_weights(iwae_model, x, 20000), 0) - math.log(20000)).mean()
    assert iwae < log_px, (iwae, log_px)


@pytest.mark.parametrize("kwargs, key", [({"beta": 0.5}, "model.beta"),
                                         ({"kl_warmup_epochs": 3}, "model.kl_warmup_epochs"),
                                         ({"free_bits": 0.1}, "model.free_bits"),
                                         ({"variational": False}, "model.variational")])
def test_iwae_refuses_knobs_it_cannot_honour(kwargs, key):
    with pytest.raises(ConfigError, match=f"objective=iwae.*{key}="):
        tiny(objective="iwae", num_samples=5, **kwargs)
    tiny(objective="elbo", num_samples=5, **kwargs)  # the ELBO takes each of them


def test_unknown_objective_is_refused_by_model_and_schema():
    with pytest.raises(ConfigError, match="model.objective"):
        tiny(objective="iwea")
    with pytest.raises(ConfigError, match="model.objective"):
        validate(compose_cfg("model=vae", "dataset=digits", "model.objective=iwea"))


def test_burda_preset_composes_to_table_1_rows():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=iwae_burda"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.iwae_row == "vae_k1,iwae_k5,iwae_k50"
    for row, objective, k in [("vae_k1", "elbo", 1), ("iwae_k5", "iwae", 5), ("iwae_k50", "iwae", 50)]:
        cfg = compose_cfg("+experiment=iwae_burda", f"iwae_row={row}")
        validate(cfg)
        m, d, t = cfg.model, cfg.dataset, cfg.trainer
        assert (m.objective, m.num_samples) == (objective, k)
        assert (list(m.hidden), m.latent_dim, m.activation, m.decoder) == ([200, 200], 50, "tanh", "bernoulli")
        assert (d.name, d.binarize, d.val_size, d.batch_size, d.iw_samples) == ("mnist", "dynamic", 0, 20, 5000)
        assert (t.optimizer, t.lr, t.weight_decay) == ("adam", 1e-3, 0.0)


def test_preset_trains_an_iwae_and_the_collector_writes_the_table(tmp_path):
    # the preset's pipeline on scikit-learn's digits (no files), with a small K
    cfg = compose_cfg("+experiment=iwae_burda", "iwae_row=iwae_k5", "dataset=digits", "trainer.epochs=1",
                      "trainer.progress=false", "dataset.iw_samples=50")
    metrics = run(cfg, tmp_path / "iwae_k5")
    assert metrics["config"]["model"]["objective"] == "iwae" and metrics["split_sizes"]["val"] == 0
    assert metrics["test_iw_log_likelihood"] > metrics["test_elbo"]
    path = Path(__file__).resolve().parents[1] / "experiments" / "vae" / "binarized_mnist.py"
    spec = importlib.util.spec_from_file_location("binarized_mnist", path)
    collector = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collector)
    with pytest.raises(ValueError, match="K = 5000"):  # a run estimated with another K is refused
        collector.collect(tmp_path)
    out = collector.write_csv(collector.collect(tmp_path, iw_samples=50), tmp_path / "table.csv")
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "objective", "k_train", "test_log_px", "epochs", "minutes"]
    assert rows[0]["model"] == "IWAE" and rows[0]["k_train"] == "5" and rows[0]["epochs"] == "1"
    assert float(rows[0]["test_log_px"]) == pytest.approx(metrics["test_iw_log_likelihood"], abs=0.01)
