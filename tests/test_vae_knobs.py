"""The VAE's further knobs: constant beta, the continuous Bernoulli and fixed-variance Gaussian decoders,
the deterministic auto-encoder, the convolutional encoder/decoder, and the latent-scatter and Fig. 2 plots."""
import math

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Normal

from helpers import compose_cfg
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.image_decoders import (CB_TAYLOR_BELOW, ContinuousBernoulliDecoder, FixedGaussianDecoder,
                                                cb_log_norm, cb_mean)
from vgae_toolkit.models.image_nets import ConvDecoderBody, ConvEncoder
from vgae_toolkit.models.vae import VAE
from vgae_toolkit.plots import vae as plots_vae
from vgae_toolkit.run import run

pytestmark = pytest.mark.usefixtures("one_thread")

LOGITS = [-30.0, -6.0, -1.0, -0.2, -CB_TAYLOR_BELOW, -0.03, -1e-5, 0.0, 1e-4, 0.05, CB_TAYLOR_BELOW, 0.4, 3.0, 25.0]


def digits_run(tmp_path, *overrides: str, epochs: int = 2) -> dict:
    cfg = compose_cfg("dataset=digits", f"trainer.epochs={epochs}", "trainer.progress=false",
                      "dataset.iw_samples=20", *overrides)
    return run(cfg, tmp_path)


# -- the continuous Bernoulli -----------------------------------------------------------------
def test_continuous_bernoulli_density_integrates_to_one():
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    for logit in LOGITS:
        logits = torch.full((len(x), 1), logit, dtype=torch.float64)
        density = ContinuousBernoulliDecoder.log_likelihood(x[:, None], logits).exp()  # one pixel per row
        total = torch.trapezoid(density, x)
        assert total.item() == pytest.approx(1.0, abs=1e-6), logit
        mean = torch.trapezoid(x * density, x)
        assert cb_mean(torch.tensor(logit, dtype=torch.float64)).item() == pytest.approx(mean.item(), abs=1e-6), logit


def test_continuous_bernoulli_matches_torch_and_is_smooth_at_one_half():
    # torch's series covers only |lambda - 1/2| < 0.001, and it clamps lambda to float eps: compare in between
    logits = torch.tensor([l for l in LOGITS if 0.02 < abs(l) <= 6], dtype=torch.float64)
    x = torch.rand(len(logits), dtype=torch.float64)
    expected = ContinuousBernoulli(logits=logits).log_prob(x)
    got = ContinuousBernoulliDecoder.log_likelihood(x[:, None], logits[:, None])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cb_mean(logits), ContinuousBernoulli(logits=logits).mean, rtol=1e-9, atol=1e-9)
    # the series and the closed form agree where they meet, and the gradient is finite at lambda = 1/2
    edge = torch.tensor([-CB_TAYLOR_BELOW, CB_TAYLOR_BELOW], dtype=torch.float64) * (1 - 1e-9)  # series side
    exact_norm = torch.log(edge.abs()) - torch.log(torch.tanh(edge.abs() / 2))
    exact_mean = 0.5 + 0.5 / torch.tanh(edge / 2) - 1 / edge
    torch.testing.assert_close(cb_log_norm(edge), exact_norm, rtol=0, atol=1e-9)
    torch.testing.assert_close(cb_mean(edge), exact_mean, rtol=0, atol=1e-9)
    assert cb_log_norm(torch.zeros(1)).item() == pytest.approx(math.log(2))
    z = torch.tensor([0.0, 1e-6, -0.05, 30.0], requires_grad=True)
    (cb_log_norm(z).sum() + cb_mean(z).sum()).backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[0].item() == pytest.approx(1 / 12)  # d mean / d eta at 0 is 1/12, d log C / d eta is 0


def test_continuous_bernoulli_training_loss_is_its_negative_log_likelihood():
    torch.manual_seed(0)
    model = VAE(input_dim=12, latent_dim=3, hidden=(8,), decoder="continuous_bernoulli")
    x = torch.rand(5, 12)
    torch.manual_seed(1)
    out = model.loss({"x": x})
    torch.manual_seed(1)
    posterior = model.encode(x)
    recon = -model.log_likelihood(x, model.decode(posterior.rsample(1))).mean()
    torch.testing.assert_close(out["recon"], recon)
    assert ((model.sample(4) >= 0) & (model.sample(4) <= 1)).all()


def test_fixed_gaussian_is_unit_variance_squared_error():
    mean, x = torch.rand(3, 4, 10), torch.rand(4, 10)
    expected = Normal(mean, torch.ones_like(mean)).log_prob(x).sum(-1)
    torch.testing.assert_close(FixedGaussianDecoder.log_likelihood(x, mean), expected)
    sq = 0.5 * (x - mean).square().sum(-1) + 10 * 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(-FixedGaussianDecoder.log_likelihood(x, mean), sq)
    model = VAE(input_dim=10, latent_dim=2, hidden=(8,), decoder="gaussian_fixed")
    assert model.decode(torch.randn(6, 2)).shape == (6, 10)


# -- beta ---------------------------------------------------------------------------------------
def test_beta_weights_the_kl_and_multiplies_the_warmup():
    x = torch.rand(8, 12)
    for kwargs in ({}, {"free_bits": 0.2, "num_samples": 2}):
        torch.manual_seed(0)
        model = VAE(input_dim=12, latent_dim=4, hidden=(16,), beta=4.0, kl_warmup_epochs=4, **kwargs)
        for epoch, weight in [(0, 0.0), (1, 1.0), (2, 2.0), (4, 4.0), (7, 4.0)]:
            model.set_epoch(epoch)
            assert model.kl_weight == weight
            torch.manual_seed(1)
            out = model.loss({"x": x})
            kl_term = out["kl"] if not kwargs else model.encode(x).kl_per_dim().mean(0).clamp(min=0.2).sum()
            torch.testing.assert_close(out["loss"], out["recon"] + weight * kl_term)
        torch.manual_seed(1)
        elbo = model.elbo(x).mean()
        if not kwargs:  # the reported ELBO keeps weight 1 whatever beta is
            torch.testing.assert_close(elbo, -(out["recon"] + out["kl"]))


def test_beta_zero_has_no_kl_gradient():
    torch.manual_seed(0)
    model = VAE(input_dim=12, latent_dim=4, hidden=(16,), beta=0.0)
    x = torch.rand(8, 12)
    torch.manual_seed(1)
    out = model.loss({"x": x})
    assert out["kl"].item() > 0  # there is a KL, it just does not train
    with_loss = torch.autograd.grad(out["loss"], list(model.parameters()), retain_graph=True, allow_unused=True)
    with_recon = torch.autograd.grad(out["recon"], list(model.parameters()), allow_unused=True)
    for a, b in zip(with_loss, with_recon):
        assert (a is None and b is None) or torch.equal(a, b)
    # while with beta = 1 the KL adds its own gradient
    model.beta = 1.0
    torch.manual_seed(1)
    out = model.loss({"x": x})
    weight = model.encoder.logstd.weight
    from_loss = torch.autograd.grad(out["loss"], weight, retain_graph=True)[0]
    assert not torch.allclose(from_loss, torch.autograd.grad(out["recon"], weight)[0])


def test_beta_from_the_command_line_is_declared_and_checked(tmp_path):
    from vgae_toolkit.schema import validate

    validate(compose_cfg("model=vae", "dataset=digits", "model.beta=4"))
    with pytest.raises(ConfigError, match=r"model.beta: expected a finite number >= 0, got -1"):
        validate(compose_cfg("model=vae", "dataset=digits", "model.beta=-1"))


# -- results of the existing configs are unchanged ------------------------------------------
# Computed with the code before beta, the new decoders and encoders existed (seeded, one thread).
BEFORE = {
    ("bernoulli", None): [8.9081449509, 8.7026119232, 8.6130180359, -8.4964847565],
    ("bernoulli", 3): [8.7619857788, 8.5437755585, 8.3689384460, -8.3575592041],
    ("gaussian", None): [11.6560850143, 11.2112989426, 10.8508834839, -10.5816698074],
    ("gaussian", 3): [11.9948158264, 11.7383174896, 11.4828414917, -11.2490482330],
}


@pytest.mark.parametrize("decoder,num_classes", list(BEFORE))
def test_existing_decoders_give_the_numbers_they_gave_before(decoder, num_classes):
    torch.manual_seed(0)
    model = VAE(input_dim=12, latent_dim=4, hidden=(16, 8), decoder=decoder, num_classes=num_classes)
    model.set_epoch(1)
    x = torch.rand(5, 12, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    values = []
    for _ in range(3):
        out = model.loss({"x": x, "y": y})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        values.append(out["loss"].item())
    values.append(model.elbo(x, y, num_samples=3).mean().item())
    assert values == pytest.approx(BEFORE[(decoder, num_classes)], rel=1e-6)


def test_a_default_run_gives_the_number_it_gave_before(tmp_path):
    metrics = digits_run(tmp_path, "model=vae")
    assert metrics["test_elbo"] == pytest.approx(-28.94097137451172, rel=1e-5)
    assert metrics["test_iw_log_likelihood"] == pytest.approx(-28.756521224975586, rel=1e-5)


# -- the deterministic auto-encoder -------------------------------------------------------------
def test_autoencoder_has_a_point_mass_posterior_and_no_kl():
    torch.manual_seed(0)
    model = VAE(input_dim=12, latent_dim=3, hidden=(8,), variational=False)
    x = torch.rand(6, 12)
    posterior = model.encode(x)
    assert posterior.deterministic and model.encoder.logstd is None
    out = model.loss({"x": x})
    assert out["kl"].item() == 0 and torch.equal(out["loss"], out["recon"])
    expected = model.log_likelihood(x, model.decode(posterior.mu))
    torch.testing.assert_close(model.elbo(x, num_samples=4), expected)
    torch.testing.assert_close(model.elbo(x, analytic_kl=False), expected)
    assert "no KL" in model.describe()["elbo_is"]
    with pytest.raises(ConfigError, match="model.variational=false has no KL"):
        VAE(input_dim=12, variational=False, beta=2.0)


def test_autoencoder_run_skips_what_has_no_meaning(tmp_path):
    cfg = compose_cfg("model=ae", "dataset=digits")
    assert cfg.model.variational is False and cfg.model.name == "ae"
    metrics = digits_run(tmp_path, "model=ae")
    assert "test_iw_log_likelihood" not in metrics and metrics["active_units"] is None
    assert metrics["test_kl"] == 0 and metrics["variational"] is False
    assert metrics["test_elbo"] > -40  # the reconstruction log-likelihood, trained
    with pytest.raises(ConfigError, match="model.variational=false"):
        digits_run(tmp_path / "b", "model=ae", "model.free_bits=0.5")


# -- convolutional encoder and decoder ----------------------------------------------------------
@pytest.mark.parametrize("shape", [(28, 28), (28, 20), (8, 8)])
@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_conv_nets_fit_each_image_shape(shape, decoder):
    pixels = shape[0] * shape[1]
    model = VAE(input_dim=pixels, latent_dim=3, hidden=(16,), decoder=decoder, num_classes=4,
                encoder={"name": "conv", "channels": [4, 8]}, image_shape=shape)
    assert isinstance(model.encoder, ConvEncoder) and isinstance(model.decoder.body, ConvDecoderBody)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [4, 8]
    assert [d.out_channels for d in deconvs] == ([4, 1] if decoder == "bernoulli" else [4, 1, 1])  # one head each
    x, y = torch.rand(5, pixels), torch.tensor([0, 1, 2, 3, 0])
    assert model.encode(x, y).mu.shape == (5, 3)
    params = model.decode(torch.randn(2, 5, 3), y)  # leading sample dim kept
    first = params[0] if decoder == "gaussian" else params
    assert first.shape == (2, 5, pixels)
    out = model.loss({"x": x, "y": y})
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    # the label reaches the conv encoder
    assert not torch.allclose(model.encode(x, y).mu, model.encode(x, (y + 1) % 4).mu)


def test_conv_refuses_shapes_it_cannot_mirror():
    with pytest.raises(ConfigError, match=r"must divide by 8, but the images are 28 x 28"):
        VAE(input_dim=784, encoder={"name": "conv", "channels": [8, 8, 8]}, image_shape=(28, 28))
    with pytest.raises(ConfigError, match="needs the images' height and width"):
        VAE(input_dim=784, encoder="conv")
    with pytest.raises(ConfigError, match=r"model.encoder.kernel: unknown key; model/encoder=conv takes "
                                          r"model.encoder.channels"):
        VAE(input_dim=64, encoder={"name": "conv", "kernel": 3}, image_shape=(8, 8))


def test_encoders_of_the_other_kind_are_refused_by_key(tmp_path):
    with pytest.raises(ConfigError, match=r"model.encoder.name: expected one of 'mlp', 'conv', got 'gat'"):
        digits_run(tmp_path, "model=vae", "model/encoder=gat")
    with pytest.raises(ConfigError, match=r"model.encoder.name='gcn': an image model takes model/encoder= one of"):
        VAE(input_dim=64, encoder="gcn")
    with pytest.raises(ConfigError, match=r"model.encoder.name='conv'"):
        run(compose_cfg("model=vgae", "model/encoder=conv", "dataset=sbm", "trainer.epochs=1"), tmp_path / "g")


def test_conv_vae_run_on_digits(tmp_path):
    metrics = digits_run(tmp_path, "model=vae", "model/encoder=conv", "model.encoder.channels=[8,16]", epochs=3)
    assert metrics["encoder"] == "ConvEncoder" and metrics["test_elbo"] > -40
    assert metrics["test_iw_log_likelihood"] >= metrics["test_elbo"] - 0.5


# -- plots --------------------------------------------------------------------------------------
def test_latent_scatter_writes_one_panel_per_model(tmp_path):
    codes = torch.randn(300, 2)
    labels = torch.arange(300) % 10
    path = plots_vae.save_latent_scatter([("ae", codes * 10, labels), ("vae", codes, labels)], tmp_path / "s.png",
                                         title="two panels")
    from matplotlib.image import imread

    height, width = imread(path).shape[:2]
    assert width > 1.8 * height  # side by side
    with pytest.raises(ValueError, match="2-D codes"):
        plots_vae.save_latent_scatter([("vae", torch.randn(5, 3), None)], tmp_path / "t.png")


@pytest.mark.slow
def test_latent_scatter_from_runs(tmp_path):
    for model in ("ae", "vae"):
        digits_run(tmp_path / model, f"model={model}", "model.latent_dim=2", "dataset.iw_samples=0", epochs=1)
    path = plots_vae.latent_scatter([tmp_path / "vae", tmp_path / "ae"], tmp_path / "fig")
    assert path.name == "latent_scatter_ae_vs_vae.png" and path.stat().st_size > 10_000


def test_figure2_shares_one_unclipped_y_range_per_dataset():
    rows = [{"dataset": d, "latent_dim": k, "curve": c, "samples_seen": s, "elbo": base + k * s / 1000 + off}
            for d, base, step in (("mnist", -250.0, 50_000), ("freyface", -50.0, 1592))
            for k in (2, 5) for c, off in (("train", 0.0), ("test", -3.0), ("val", -500.0))
            for s in (step, 2 * step, 10 * step)]
    fig = plots_vae.figure2_figure(rows)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    for dataset, panels in (("mnist", axes[:2]), ("freyface", axes[2:])):
        shown = [r for r in rows if r["dataset"] == dataset and r["curve"] != "val"]
        low, high = min(r["elbo"] for r in shown), max(r["elbo"] for r in shown)
        assert panels[0].get_ylim() == panels[1].get_ylim()
        y0, y1 = panels[0].get_ylim()
        assert y0 < low and y1 > high and y0 > -500  # every drawn point in range, validation not drawn
        xs = [r["samples_seen"] for r in shown]
        assert panels[0].get_xlim() == pytest.approx((min(xs), max(xs)))


def test_figure2_keeps_log_spaced_points_of_long_curves():
    assert plots_vae.log_spaced(5, 400) == [0, 1, 2, 3, 4]  # short curves: every point
    kept = plots_vae.log_spaced(62_820, 400)
    assert kept[0] == 0 and kept[-1] == 62_819 and len(kept) <= 402 and kept == sorted(set(kept))
    assert sum(i < 628 for i in kept) > 2 * sum(i >= 31_410 for i in kept)  # first 1% denser than last half
    decades = [sum(10 ** d <= i + 1 < 10 ** (d + 1) for i in kept) for d in (2, 3)]
    assert 70 < decades[0] and abs(decades[0] - decades[1]) <= 3  # as many points in every full decade


def test_figure2_redraws_from_its_csv(tmp_path):
    rows = [{"dataset": "mnist", "latent_dim": 3, "curve": c, "samples_seen": s, "elbo": -200.0 + s / 1e4}
            for c in ("train", "test") for s in (50_000, 100_000)]
    plots_vae._write_csv(tmp_path / "figure2_curves.csv", rows)
    assert plots_vae.read_curves(tmp_path / "figure2_curves.csv") == rows
    plots_vae.main(["figure2-csv", str(tmp_path / "figure2_curves.csv"), "--out", str(tmp_path)])
    assert (tmp_path / "figure2.png").stat().st_size > 5_000


def test_frey_face_presets_lower_the_variance_floor_and_nothing_else_does():
    def floor(*overrides):
        return compose_cfg(*overrides).model.min_logvar

    assert floor("+experiment=figure2_freyface") == floor("+experiment=vae_paper", "dataset=freyface") == -11.0
    # a floor of -11 allows far more than AEVB Fig. 2's ~1600 nats over 560 pixels; -6 would cap it at 1165
    assert 560 * (11 - math.log(2 * math.pi)) / 2 > 1600 > 560 * (6 - math.log(2 * math.pi)) / 2
    for overrides in (("model=vae", "dataset=freyface"), ("+experiment=vae_paper", "dataset=mnist"),
                      ("+experiment=figure2_mnist",), ("model=cvae",)):
        assert floor(*overrides) == -6.0, overrides
