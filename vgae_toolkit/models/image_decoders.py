"""Likelihoods p(x|z) of the image models, each a decoder body with one output head per parameter.

Pixels are independent given z. Every decoder returns its parameters from ``forward(z)`` and offers
``log_likelihood(x, params)`` (nats, summed over pixels, ``[..., batch]``), ``mean_nll(x, params)`` (the
training loss's reconstruction term) and ``mean(params)`` (the image shown in samples and reconstructions).

- ``bernoulli``: Bernoulli(sigmoid(logits)) (AEVB App. C.1). On grey levels in [0, 1] it is not a
  normalised density: it says nothing comparable about log p(x).
- ``continuous_bernoulli``: the continuous Bernoulli of Loaiza-Ganem & Cunningham 2019
  (https://arxiv.org/abs/1907.06845), the Bernoulli's form normalised over x in [0, 1]: a true
  log-density for grey levels.
- ``gaussian``: N(m, diag exp(logvar)), m = sigmoid(.) (AEVB App. C.2, Frey Face), with a floor on logvar.
- ``gaussian_fixed``: N(m, I), sigma = 1: the squared error 0.5 ||x - m||^2 plus a constant.
- ``pixelcnn``: autoregressive, pixels not independent given z: a PixelCNN conditioned on z
  (:mod:`~vgae_toolkit.models.autoregressive`), for showing posterior collapse.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.models.autoregressive import PixelCNNDecoder
from vgae_toolkit.models.latent import LOG_2PI, normal_log_prob

LOG_2 = math.log(2.0)
# |logit| below which the continuous Bernoulli's normaliser and mean use their Taylor series around
# lambda = 1/2 (logit 0), where the closed forms are 0/0 (Loaiza-Ganem & Cunningham 2019, Sec. 3 and
# their code, which switches at lambda in [0.49, 0.51]; here lambda in [0.475, 0.525]). The series'
# first omitted terms are below 1e-9 there.
CB_TAYLOR_BELOW = 0.1


class BernoulliDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d)) (AEVB App. C.1); returns the logits.

    Args:
        body (nn.Module): the decoder's layers; ``body.head(output_dim)`` makes the output layer.
        output_dim (int): pixels per image.
    """

    def __init__(self, body: nn.Module, *, output_dim: int) -> None:
        super().__init__()
        self.body = body
        self.logits = body.head(output_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.logits(self.body(z))  # [..., batch, output]

    @staticmethod
    def log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, ``[..., batch]``; also defined for x in [0, 1]."""
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    @staticmethod
    def mean_nll(x: Tensor, logits: Tensor) -> Tensor:
        """``-log_likelihood(x, logits).mean()`` as one summed BCE (the same value, fewer steps)."""
        rows = logits.numel() // logits.size(-1)
        return F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="sum") / rows

    @staticmethod
    def mean(logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


def cb_log_norm(logits: Tensor) -> Tensor:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits), elementwise.

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda) (Loaiza-Ganem & Cunningham 2019, eq. 7), which in
    the logit eta is eta / tanh(eta / 2), even in eta; near eta = 0 its series
    log 2 + eta^2 / 12 - 7 eta^4 / 1440.
    """
    a = logits.abs()
    small = a < CB_TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    exact = torch.log(safe) - torch.log(torch.tanh(0.5 * safe))
    sq = a.square()
    return torch.where(small, LOG_2 + sq / 12 - 7 * sq.square() / 1440, exact)


def cb_mean(logits: Tensor) -> Tensor:
    """E[x] of the continuous Bernoulli, lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)), elementwise.

    In the logit: 1/2 + 1 / (2 tanh(eta / 2)) - 1 / eta; near eta = 0: 1/2 + eta / 12 - eta^3 / 720.
    """
    small = logits.abs() < CB_TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(logits), logits)
    exact = 0.5 + 0.5 / torch.tanh(0.5 * safe) - 1 / safe
    return torch.where(small, 0.5 + logits / 12 - logits.pow(3) / 720, exact)


class ContinuousBernoulliDecoder(BernoulliDecoder):
    """p(x|z) = prod_d C(lambda_d) lambda_d^x_d (1 - lambda_d)^(1 - x_d), x in [0, 1] (Loaiza-Ganem &
    Cunningham 2019): the Bernoulli likelihood plus log C(lambda), a normalised density; returns the logits.

    ``mean`` is the distribution's mean (their eq. 8), not lambda.
    """

    @staticmethod
    def log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
        """log p(x|z) summed over pixels, ``[..., batch]``."""
        return BernoulliDecoder.log_likelihood(x, logits) + cb_log_norm(logits).sum(-1)

    @staticmethod
    def mean_nll(x: Tensor, logits: Tensor) -> Tensor:
        rows = logits.numel() // logits.size(-1)
        return BernoulliDecoder.mean_nll(x, logits) - cb_log_norm(logits).sum() / rows

    @staticmethod
    def mean(logits: Tensor) -> Tensor:
        return cb_mean(logits)


class GaussianDecoder(nn.Module):
    """p(x|z) = N(x; m, diag exp(logvar)) with m = sigmoid(.) (AEVB App. C.2, as for Frey Face).

    Args:
        body (nn.Module): the decoder's layers; ``body.head(output_dim)`` makes each output layer.
        output_dim (int): pixels per image.
        min_logvar (float): floor on the predicted log-variance; without it a pixel that is
            constant in the data drives the variance to 0 and the likelihood to infinity. It also
            caps log p(x|z) at ``output_dim * (-min_logvar - log(2 pi)) / 2``.
    """

    def __init__(self, body: nn.Module, *, output_dim: int, min_logvar: float = -6.0) -> None:
        super().__init__()
        self.body = body
        self.mean_head = body.head(output_dim)
        self.logvar_head = body.head(output_dim)
        self.min_logvar = min_logvar

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(z)
        return torch.sigmoid(self.mean_head(h)), self.logvar_head(h).clamp(min=self.min_logvar)

    @staticmethod
    def log_likelihood(x: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        """log N(x; m, diag exp(logvar)) summed over pixels, ``[..., batch]``."""
        mean, logvar = params
        return normal_log_prob(x, mean, 0.5 * logvar)

    @classmethod
    def mean_nll(cls, x: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        """``-log_likelihood(x, params)`` averaged over samples and images."""
        return -cls.log_likelihood(x, params).mean()

    @staticmethod
    def mean(params: tuple[Tensor, Tensor]) -> Tensor:
        return params[0]


class FixedGaussianDecoder(nn.Module):
    """p(x|z) = N(x; m, I), m = sigmoid(.): sigma = 1, so -log p(x|z) = 0.5 ||x - m||^2 + (D / 2) log(2 pi),
    the squared-error loss of a plain auto-encoder plus a constant; returns m.

    Args:
        body (nn.Module): the decoder's layers; ``body.head(output_dim)`` makes the output layer.
        output_dim (int): pixels per image.
    """

    def __init__(self, body: nn.Module, *, output_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mean_head = body.head(output_dim)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.mean_head(self.body(z)))

    @staticmethod
    def log_likelihood(x: Tensor, mean: Tensor) -> Tensor:
        """log N(x; m, I) summed over pixels, ``[..., batch]``."""
        return (-0.5 * (x - mean).square() - 0.5 * LOG_2PI).sum(-1)

    @classmethod
    def mean_nll(cls, x: Tensor, mean: Tensor) -> Tensor:
        return -cls.log_likelihood(x, mean).mean()

    @staticmethod
    def mean(mean: Tensor) -> Tensor:
        return mean


DECODERS = {"bernoulli": BernoulliDecoder, "continuous_bernoulli": ContinuousBernoulliDecoder,
            "gaussian": GaussianDecoder, "gaussian_fixed": FixedGaussianDecoder, "pixelcnn": PixelCNNDecoder}
