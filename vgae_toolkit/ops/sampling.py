"""The reparameterised sample z = mu + sigma * eps and the mean KL(q || N(0, I)) as one autograd node.

The same values as ``mu + logstd.clamp(max=max_logstd).exp() * eps`` and the closed-form KL averaged
over rows (AEVB App. B), with the backward pass written out instead of a dozen elementwise nodes:
d/d mu = g_z + g_kl mu / B; d/d log sigma = g_z sigma eps + g_kl (sigma^2 - 1) / B, zero where the
clamp is active. Tested against autograd through those expressions.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sample_and_mean_kl(mu: Tensor, logstd: Tensor, eps: Tensor, max_logstd: float,
                       packed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(z, kl)``: the sample ``mu + sigma * eps`` and the KL to N(0, I) summed over the last
    dimension and averaged over the other rows, with sigma = exp(min(logstd, max_logstd)).

    Args:
        mu, logstd (Tensor): the posterior's parameters, ``[..., latent]``.
        eps (Tensor): standard normal noise of the same shape.
        max_logstd (float): the clamp on ``logstd``.
        packed (Tensor, optional): ``[..., 2 * latent]`` whose halves are ``mu`` and ``logstd``: the
            gradient is then returned for it, as one tensor, instead of for the two halves.
    """
    if packed is not None:
        return _PackedSampleAndMeanKL.apply(packed, eps, max_logstd)
    return _SampleAndMeanKL.apply(mu, logstd, eps, max_logstd)


def _sample_and_mean_kl(ctx, first: Tensor, mu: Tensor, logstd: Tensor, eps: Tensor,
                        max_logstd: float) -> tuple[Tensor, Tensor]:
    """The forward pass of both sampling nodes: saves ``first`` (the input that holds ``mu``) and what the
    backward pass needs."""
    clamped = logstd.clamp(max=max_logstd)
    std = clamped.exp()
    noise = std * eps
    z = mu + noise
    rows = mu.numel() // mu.size(-1)  # the KL is averaged over every row of the sample
    # mean over rows of sum_d 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma)  (AEVB App. B)
    kl = 0.5 * ((mu * mu).sum() + (std * std).sum() - 2 * clamped.sum()) / rows - 0.5 * mu.size(-1)
    ctx.save_for_backward(first, std, noise, logstd > max_logstd)
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
    def forward(ctx, mu: Tensor, logstd: Tensor, eps: Tensor, max_logstd: float) -> tuple[Tensor, Tensor]:
        return _sample_and_mean_kl(ctx, mu, mu, logstd, eps, max_logstd)

    @staticmethod
    def backward(ctx, grad_z: Tensor | None, grad_kl: Tensor | None) -> tuple[Tensor, Tensor, None, None]:
        mu = ctx.saved_tensors[0]
        grad_mu, grad_logstd = torch.empty_like(mu), torch.empty_like(mu)
        _sample_and_mean_kl_grads(ctx, mu, grad_z, grad_kl, grad_mu, grad_logstd)
        return grad_mu, grad_logstd, None, None


class _PackedSampleAndMeanKL(torch.autograd.Function):
    """:class:`_SampleAndMeanKL` of the halves of one ``[batch, 2 * latent]`` tensor, whose gradient
    is written into the halves of one tensor of that shape."""

    @staticmethod
    def forward(ctx, both: Tensor, eps: Tensor, max_logstd: float) -> tuple[Tensor, Tensor]:
        return _sample_and_mean_kl(ctx, both, *both.chunk(2, dim=-1), eps, max_logstd)

    @staticmethod
    def backward(ctx, grad_z: Tensor | None, grad_kl: Tensor | None) -> tuple[Tensor, None, None]:
        both = ctx.saved_tensors[0]
        grad = torch.empty_like(both)
        _sample_and_mean_kl_grads(ctx, both.chunk(2, dim=-1)[0], grad_z, grad_kl, *grad.chunk(2, dim=-1))
        return grad, None, None
