"""The PixelCNN decoder (vgae_toolkit/models/autoregressive.py): causality, shapes, sampling, the image task."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import compose_cfg
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.metrics import importance_weighted_log_likelihood
from vgae_toolkit.models.autoregressive import MaskedConv2d, PixelCNNDecoder, image_shape_of
from vgae_toolkit.models.image_nets import ConvDecoderBody, mlp
from vgae_toolkit.models.latent import standard_normal_log_prob
from vgae_toolkit.models.vae import VAE
from vgae_toolkit.ops.iw import likelihood_of
from vgae_toolkit.run import run

pytestmark = pytest.mark.usefixtures("one_thread")


def decoder(pixels=36, layers=2, latent=3):
    torch.manual_seed(0)
    return PixelCNNDecoder(mlp(latent, [8], "relu"), output_dim=pixels, channels=6, num_layers=layers).double()


def binary(*shape, seed=1):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) > 0.5).double()


def test_a_logit_sees_only_earlier_pixels():
    dec = decoder(pixels=36)  # 6 x 6
    params = dec(torch.randn(2, 3, dtype=torch.float64))  # [batch, conditioning]
    x = binary(2, 36)
    base = dec.logits(x, params)
    for i in (0, 5, 6, 14, 20, 35):
        flipped = x.clone()
        flipped[:, i] = 1 - flipped[:, i]
        change = (dec.logits(flipped, params) - base).abs()  # [batch, 36]
        assert change[:, : i + 1].max() == 0, f"pixel {i} reaches a logit at or before it"
        if i < 35:
            assert change[:, i + 1:].max() > 1e-6, f"pixel {i} reaches no later logit"


def test_the_causality_check_catches_a_leak():
    dec = decoder(pixels=36)
    dec.net.first.mask[:, :, 3, 3] = 1  # mask B in the first layer: a pixel sees itself
    params, x = dec(torch.randn(2, 3, dtype=torch.float64)), binary(2, 36)
    flipped = x.clone()
    flipped[:, 14] = 1 - flipped[:, 14]
    assert (dec.logits(flipped, params) - dec.logits(x, params))[:, 14].abs().max() > 0


def test_masks():
    a, b = MaskedConv2d(1, 1, 3, "A").mask[0, 0], MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        MaskedConv2d(1, 1, 4, "A")


def test_log_likelihood_with_leading_sample_dims():
    dec = decoder(pixels=36)
    x = binary(5, 36)  # [batch, D]
    params = dec(torch.randn(4, 5, 3, dtype=torch.float64))  # [samples, batch, conditioning]
    ll = dec.log_likelihood(x, params)
    assert ll.shape == (4, 5)
    for s in range(4):  # each sample alone, as Bernoulli log-probabilities of the teacher-forced logits
        logits = dec.logits(x, params[s])
        expected = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)
        torch.testing.assert_close(ll[s], expected)
    torch.testing.assert_close(dec.mean_nll(x, params), -ll.mean())
    assert (ll < 0).all()


def test_a_window_gives_the_whole_image_logit():
    dec = decoder(pixels=144, layers=1)  # 12 x 12, reach 4: windows smaller than the image
    params, x = dec(torch.randn(3, 3, dtype=torch.float64)), binary(3, 144)
    full = dec.logits(x, params).reshape(3, 12, 12)
    images, reach = x.reshape(3, 1, 12, 12), dec.net.reach
    assert reach == 4
    for r, c in [(0, 0), (5, 0), (5, 6), (11, 11), (8, 2)]:
        top, left, right = max(0, r - reach), max(0, c - reach), min(12, c + reach + 1)
        window = dec.net(images[:, :, top:r + 1, left:right], params)[:, r - top, c - left]
        torch.testing.assert_close(window, full[:, r, c])


def test_sampling_draws_pixel_by_pixel():
    dec = decoder(pixels=16)
    params = dec(torch.randn(2, 3, 3, dtype=torch.float64))
    torch.manual_seed(0)
    probs = dec.mean(params)
    assert probs.shape == (2, 3, 16) and ((probs > 0) & (probs < 1)).all()
    # the first pixel sees nothing before it: its probability is the teacher-forced one at any image
    first = torch.sigmoid(dec.logits(torch.zeros(3, 16, dtype=torch.float64), params))[..., 0]
    torch.testing.assert_close(probs[..., 0], first)


def test_shapes_and_bodies():
    assert image_shape_of(784) == (28, 28) and image_shape_of(64) == (8, 8) and image_shape_of(30) == (1, 30)
    body = ConvDecoderBody(input_dim=3, image_shape=(8, 8), channels=[4], hidden=[8], activation="relu")
    with pytest.raises(ConfigError, match="encoder=mlp"):
        PixelCNNDecoder(body, output_dim=64)


def test_importance_weights_use_the_models_own_likelihood():
    torch.manual_seed(0)
    model = VAE(input_dim=16, latent_dim=2, hidden=(8,), decoder="pixelcnn").double().eval()
    x = binary(3, 16)
    with torch.no_grad():
        assert likelihood_of(model, x, None, model.encode(x).mu) == model.log_likelihood
        torch.manual_seed(3)
        fast = importance_weighted_log_likelihood(model, x, num_samples=12, chunk=5, batch_size=2)
        torch.manual_seed(3)
        expected = []
        for start in (0, 2):  # the straightforward loop, in the same order of draws
            xb = x[start:start + 2]
            posterior = model.encode(xb)
            log_w = [model.log_likelihood(xb, model.decode(z)) + standard_normal_log_prob(z) - posterior.log_prob(z)
                     for z in (posterior.rsample(n) for n in (5, 5, 2))]
            expected.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(12))
    torch.testing.assert_close(fast, torch.cat(expected), rtol=1e-10, atol=1e-8)


def test_the_image_task_runs_a_pixelcnn_vae(tmp_path):
    cfg = compose_cfg("model=vae", "dataset=digits", "model.decoder=pixelcnn", "model.hidden=[32]",
                      "model.latent_dim=4", "model.kl_cycle_epochs=2", "trainer.epochs=2", "trainer.progress=false",
                      "dataset.iw_samples=5")
    metrics = run(cfg, tmp_path)
    assert metrics["decoder"] == "PixelCNNDecoder"
    assert math.isfinite(metrics["test_elbo"]) and math.isfinite(metrics["test_iw_log_likelihood"])
    assert metrics["test_iw_log_likelihood"] >= metrics["test_elbo"] - 5  # the K = 5 bound is not far below
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["kl_dims"] == sum(v > saved["kl_dims_threshold"] for v in saved["kl_per_dim"])
    assert len(saved["history"]) == 2 and all("train_kl" in h for h in saved["history"])
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "reconstructions.png").is_file()
