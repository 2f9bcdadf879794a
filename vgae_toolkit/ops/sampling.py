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
    backward pass needs. ``mu`` and ``logstd`` may be strided halves of one tensor: each is read once,
    and every tensor made here is contiguous."""
    clamped = logstd.clamp(max=max_logstd)
    sum_clamped = clamped.sum()
    # where the clamp is active the gradient is zero; it rarely is (max_logstd = 10), and the maximum of
    # the clamped values is cheaper than the mask, so the mask is made only when that maximum is the bound
    # (a NaN maximum makes no mask: the loss is NaN then, and training stops on it)
    mask = (logstd > max_logstd,) if clamped.numel() and bool(clamped.max() >= max_logstd) else ()
    std = clamped.exp_()  # the clamped values are summed: their buffer takes sigma
    noise = std * eps
    z = mu + noise
    variance_m1 = std * std - 1.0  # sigma^2 - 1: the KL's gradient with respect to log sigma
    rows = mu.numel() // mu.size(-1)  # the KL is averaged over every row of the sample
    # mean over rows of sum_d 0.5 (mu^2 + sigma^2 - 1 - 2 log sigma)  (AEVB App. B)
    kl = 0.5 * ((mu * mu).sum() + variance_m1.sum() - 2 * sum_clamped) / rows
    ctx.save_for_backward(first, variance_m1, noise, *mask)
    ctx.rows = rows
    return z, kl


def _sample_and_mean_kl_grads(ctx, mu: Tensor, grad_z: Tensor | None, grad_kl: Tensor | None,
                              grad_mu: Tensor, grad_logstd: Tensor) -> None:
    """Writes d/d mu and d/d log sigma of the sampling node into ``grad_mu`` and ``grad_logstd``."""
    _, variance_m1, noise, *clamped = ctx.saved_tensors
    scale = 0.0 if grad_kl is None else float(grad_kl) / ctx.rows
    if grad_z is None:
        torch.mul(mu, scale, out=grad_mu)  # d KL / d mu = mu
        torch.mul(variance_m1, scale, out=grad_logstd)  # d KL / d log sigma = sigma^2 - 1
    else:
        torch.add(grad_z, mu, alpha=scale, out=grad_mu)
        torch.mul(grad_z, noise, out=grad_logstd)  # d z / d log sigma = sigma eps
        if scale:
            grad_logstd.add_(variance_m1, alpha=scale)
    if clamped:
        grad_logstd.masked_fill_(clamped[0], 0.0)


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
