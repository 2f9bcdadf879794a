"""The latent-variable contract shared by every model in the toolkit.

An encoder returns a :class:`Posterior` q(z|x) = N(mu, diag sigma^2). The VAE
(Kingma & Welling, https://arxiv.org/abs/1312.6114) and the VGAE (Kipf & Welling,
https://arxiv.org/abs/1611.07308) both sample it with the reparameterisation trick and
regularise it with the closed-form KL divergence to the prior N(0, I). The GAE is the
deterministic special case: ``logstd is None``, sampling returns the mean and the KL is 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

# exp(2 * 10) is already ~5e8; larger log-stds only overflow (PyG clamps at the same value).
MAX_LOGSTD = 10.0


@dataclass(frozen=True)
class Posterior:
    """A diagonal Gaussian q(z|x) = N(mu, diag(exp(logstd)^2)).

    Args:
        mu (Tensor): means, ``[batch, latent]``.
        logstd (Tensor, optional): log standard deviations (log sigma, not log sigma^2),
            same shape as ``mu``; ``None`` makes the posterior a point mass at ``mu``.
        packed (Tensor, optional): ``[batch, 2 * latent]`` whose halves are ``mu`` and ``logstd``, for
            an encoder that computes both heads in one product (:meth:`from_packed`).
    """

    mu: Tensor
    logstd: Tensor | None = None
    packed: Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_packed(cls, both: Tensor) -> Posterior:
        """``mu`` and ``logstd`` as the two halves of the last dimension of ``both``.

        Sampling then returns the gradient of both heads as one tensor, the layout the encoder's
        product made, instead of two halves that autograd joins with a copy.
        """
        mu, logstd = both.chunk(2, dim=-1)
        return cls(mu, logstd, packed=both)

    @property
    def deterministic(self) -> bool:
        return self.logstd is None

    @property
    def std(self) -> Tensor:
        if self.logstd is None:
            return torch.zeros_like(self.mu)
        return self.logstd.clamp(max=MAX_LOGSTD).exp()

    def rsample(self, num_samples: int | None = None) -> Tensor:
        """Reparameterised sample z = mu + sigma * eps, eps ~ N(0, I).

        Args:
            num_samples (int, optional): draw ``[num_samples, batch, latent]`` instead of
                one ``[batch, latent]`` sample.
        """
        shape = self.mu.shape if num_samples is None else (num_samples, *self.mu.shape)
        if self.logstd is None:
            return self.mu.expand(shape)
        eps = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) summed over latent dimensions; ``z`` may carry leading sample dims."""
        if self.logstd is None:
            raise ValueError("a deterministic posterior has no density")
        logstd = self.logstd.clamp(max=MAX_LOGSTD)
        return normal_log_prob(z, self.mu, logstd)

    def kl_per_dim(self) -> Tensor:
        """KL(q || N(0, I)) for each latent dimension, ``[batch, latent]`` (AEVB App. B)."""
        if self.logstd is None:
            return torch.zeros_like(self.mu)
        logstd = self.logstd.clamp(max=MAX_LOGSTD)
        return 0.5 * (self.mu.pow(2) + (2 * logstd).exp() - 1.0 - 2 * logstd)

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per row, summed over latent dimensions: ``[batch]``."""
        return self.kl_per_dim().sum(dim=-1)

    def rsample_and_mean_kl(self) -> tuple[Tensor, Tensor]:
        """``(self.rsample(), self.kl().mean())`` in one autograd node.

        The same sample (one ``randn`` of the same shape) and the same values; the backward pass is
        written out (d/d mu = g_z + g_kl mu / B; d/d log sigma = g_z sigma eps + g_kl (sigma^2 - 1) / B,
        zero where the clamp is active) instead of a dozen elementwise nodes, which is most of the
        cost of the sample and the KL on graphs of a few thousand nodes.
        """
        if self.logstd is None:
            return self.mu, self.mu.new_zeros(())
        eps = torch.randn(self.mu.shape, dtype=self.mu.dtype, device=self.mu.device)
        if self.packed is not None:
            return _PackedSampleAndMeanKL.apply(self.packed, eps)
        return _SampleAndMeanKL.apply(self.mu, self.logstd, eps)


def _sample_and_mean_kl(ctx, first: Tensor, mu: Tensor, logstd: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """The forward pass of both sampling nodes: saves ``first`` (the input that holds ``mu``) and what the
    backward pass needs."""
    clamped = logstd.clamp(max=MAX_LOGSTD)
    std = clamped.exp()
    noise = std * eps
    z = mu + noise
    rows = mu.numel() // mu.size(-1)  # the KL is averaged over every row of the sample
    # mean over rows of sum_d 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma)  (AEVB App. B)
    kl = 0.5 * ((mu * mu).sum() + (std * std).sum() - 2 * clamped.sum()) / rows - 0.5 * mu.size(-1)
    ctx.save_for_backward(first, std, noise, logstd > MAX_LOGSTD)
    ctx.rows = rows
    return z, kl


def _sample_and_mean_kl_grads(ctx, mu: Tensor, grad_z: Tensor | None, grad_kl: Tensor | None,
                              grad_mu: Tensor, grad_logstd: Tensor) -> None:
    """Writes d/d mu and d/d log sigma of the sampling node into ``grad_mu`` and ``grad_logstd``."""
    _, std, noise, clamped = ctx.saved_tensors
    if grad_z is None:
        grad_mu.zero_()
        grad_logstd.zero_()
    else:
        grad_mu.copy_(grad_z)
        torch.mul(grad_z, noise, out=grad_logstd)  # d z / d log sigma = sigma eps
    if grad_kl is not None:
        scale = grad_kl / ctx.rows
        grad_mu.addcmul_(mu, scale)  # d KL / d mu = mu
        grad_logstd.addcmul_(std * std - 1.0, scale)  # d KL / d log sigma = sigma^2 - 1
    grad_logstd.masked_fill_(clamped, 0.0)


class _SampleAndMeanKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu: Tensor, logstd: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        return _sample_and_mean_kl(ctx, mu, mu, logstd, eps)

    @staticmethod
    def backward(ctx, grad_z: Tensor | None, grad_kl: Tensor | None) -> tuple[Tensor, Tensor, None]:
        mu = ctx.saved_tensors[0]
        grad_mu, grad_logstd = torch.empty_like(mu), torch.empty_like(mu)
        _sample_and_mean_kl_grads(ctx, mu, grad_z, grad_kl, grad_mu, grad_logstd)
        return grad_mu, grad_logstd, None


class _PackedSampleAndMeanKL(torch.autograd.Function):
    """:class:`_SampleAndMeanKL` of the halves of one ``[batch, 2 * latent]`` tensor, whose gradient
    is written into the halves of one tensor of that shape."""

    @staticmethod
    def forward(ctx, both: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        return _sample_and_mean_kl(ctx, both, *both.chunk(2, dim=-1), eps)

    @staticmethod
    def backward(ctx, grad_z: Tensor | None, grad_kl: Tensor | None) -> tuple[Tensor, None]:
        both = ctx.saved_tensors[0]
        grad = torch.empty_like(both)
        _sample_and_mean_kl_grads(ctx, both.chunk(2, dim=-1)[0], grad_z, grad_kl, *grad.chunk(2, dim=-1))
        return grad, None


LOG_2PI = float(torch.log(torch.tensor(2 * torch.pi)))


def normal_log_prob(z: Tensor, mu: Tensor, logstd: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logstd)^2)) summed over the last dimension."""
    return (-0.5 * ((z - mu) / logstd.exp()).pow(2) - logstd - 0.5 * LOG_2PI).sum(dim=-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension (the prior p(z))."""
    return (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(dim=-1)
