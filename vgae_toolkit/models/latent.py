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

from vgae_toolkit.ops.sampling import sample_and_mean_kl

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
        written out (:func:`~vgae_toolkit.ops.sampling.sample_and_mean_kl`) instead of a dozen
        elementwise nodes.
        """
        if self.logstd is None:
            return self.mu, self.mu.new_zeros(())
        eps = torch.randn(self.mu.shape, dtype=self.mu.dtype, device=self.mu.device)
        return sample_and_mean_kl(self.mu, self.logstd, eps, MAX_LOGSTD, self.packed)


LOG_2PI = float(torch.log(torch.tensor(2 * torch.pi)))


def normal_log_prob(z: Tensor, mu: Tensor, logstd: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logstd)^2)) summed over the last dimension."""
    return (-0.5 * ((z - mu) / logstd.exp()).pow(2) - logstd - 0.5 * LOG_2PI).sum(dim=-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension (the prior p(z))."""
    return (-0.5 * z.pow(2) - 0.5 * LOG_2PI).sum(dim=-1)
