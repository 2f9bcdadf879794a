"""The shared posterior: closed-form KL, reparameterised sampling, log-densities."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vgae_toolkit.models.latent import Posterior, normal_log_prob, standard_normal_log_prob


def _posterior(batch: int = 5, latent: int = 3, seed: int = 0) -> Posterior:
    g = torch.Generator().manual_seed(seed)
    return Posterior(torch.randn(batch, latent, generator=g), 0.5 * torch.randn(batch, latent, generator=g))


def test_kl_matches_torch_distributions():
    q = _posterior()
    expected = kl_divergence(Normal(q.mu, q.logstd.exp()), Normal(0.0, 1.0)).sum(-1)
    assert q.kl().shape == (5,)
    torch.testing.assert_close(q.kl(), expected)
    torch.testing.assert_close(q.kl_per_dim().sum(-1), q.kl())


def test_kl_is_zero_at_standard_normal_and_positive_elsewhere():
    zeros = torch.zeros(4, 3)
    assert torch.equal(Posterior(zeros, zeros).kl(), torch.zeros(4))
    # Moving the mean or the scale alone already costs nats.
    assert (Posterior(zeros + 0.1, zeros).kl() > 0).all()
    assert (Posterior(zeros, zeros - 0.1).kl() > 0).all()
    assert (Posterior(zeros, zeros + 0.1).kl() > 0).all()
    assert (_posterior().kl() > 0).all()


def test_deterministic_posterior_is_a_point_mass():
    mu = torch.randn(4, 3)
    q = Posterior(mu)
    assert q.deterministic
    assert torch.equal(q.rsample(), mu)
    assert q.rsample(7).shape == (7, 4, 3)
    assert torch.equal(q.rsample(7)[3], mu)
    assert torch.equal(q.kl(), torch.zeros(4))
    assert torch.equal(q.std, torch.zeros(4, 3))
    with pytest.raises(ValueError):
        q.log_prob(mu)


def test_rsample_shapes_and_moments():
    mu = torch.tensor([[1.0, -2.0]])
    std = torch.tensor([[0.5, 2.0]])
    q = Posterior(mu, std.log())
    assert q.rsample().shape == (1, 2)
    torch.manual_seed(0)
    z = q.rsample(200_000)  # [samples, 1, 2]
    assert z.shape == (200_000, 1, 2)
    # Standard errors are std / sqrt(2e5) < 0.005: a 0.02 tolerance is 4+ sigmas.
    torch.testing.assert_close(z.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), std, atol=0.02, rtol=0)


def test_rsample_is_reparameterised():
    mu = torch.zeros(3, 2, requires_grad=True)
    logstd = torch.zeros(3, 2, requires_grad=True)
    torch.manual_seed(0)
    z = Posterior(mu, logstd).rsample()
    z.sum().backward()
    # dz/dmu = 1 and dz/dlogstd = sigma * eps = z - mu.
    torch.testing.assert_close(mu.grad, torch.ones(3, 2))
    torch.testing.assert_close(logstd.grad, z.detach())


def test_log_prob_matches_torch_distributions():
    q = _posterior()
    torch.manual_seed(1)
    z = q.rsample(6)  # [samples, batch, latent]: log_prob broadcasts over the sample dim
    expected = Normal(q.mu, q.logstd.exp()).log_prob(z).sum(-1)
    assert q.log_prob(z).shape == (6, 5)
    torch.testing.assert_close(q.log_prob(z), expected)
    torch.testing.assert_close(normal_log_prob(z, q.mu, q.logstd), expected)
    torch.testing.assert_close(standard_normal_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_standard_normal_log_prob_at_origin():
    assert float(standard_normal_log_prob(torch.zeros(1, 4))) == pytest.approx(-2 * math.log(2 * math.pi))


def test_mc_kl_agrees_with_closed_form():
    # E_q[log q(z) - log p(z)] is the KL; the closed form must be its limit.
    q = _posterior(batch=2, latent=2)
    torch.manual_seed(2)
    z = q.rsample(200_000)
    mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, q.kl(), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("packed", [False, True], ids=["two-heads", "packed"])
def test_fused_sample_and_kl_match_the_separate_ones_and_their_gradients(packed):
    both = torch.randn(6, 6, dtype=torch.float64)
    both[:, 5] += 12.0  # a clamped column of log sigma
    both.requires_grad_()
    post = Posterior.from_packed(both) if packed else Posterior(*both.chunk(2, dim=1))
    assert (post.packed is both) == packed
    torch.manual_seed(3)
    z_ref = post.mu + post.std * torch.randn(6, 3, dtype=torch.float64)  # rsample and kl, op by op
    kl_ref = post.kl().mean()
    torch.manual_seed(3)
    z, kl = post.rsample_and_mean_kl()
    assert torch.allclose(z, z_ref) and torch.allclose(kl, kl_ref)
    weights = torch.randn(6, 3, dtype=torch.float64)
    for combine in (lambda z, kl: (z * weights).sum() + 0.7 * kl, lambda z, kl: kl, lambda z, kl: (z * weights).sum()):
        ref = torch.autograd.grad(combine(z_ref, kl_ref), both, retain_graph=True)[0]
        got = torch.autograd.grad(combine(z, kl), both, retain_graph=True)[0]
        assert torch.allclose(got, ref)
    assert (torch.autograd.grad(kl, both, retain_graph=True)[0][:, 5] == 0).all()  # beyond the clamp


def test_fused_sample_of_a_point_mass_is_its_mean_with_zero_kl():
    mu = torch.randn(4, 2)
    z, kl = Posterior(mu).rsample_and_mean_kl()
    assert torch.equal(z, mu) and kl == 0
