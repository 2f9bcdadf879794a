"""The variational auto-encoder on flat images, its conditional variant and the plain auto-encoder.

Kingma & Welling, Auto-Encoding Variational Bayes (AEVB), https://arxiv.org/abs/1312.6114:
an encoder q(z|x) = N(mu, diag sigma^2), a decoder p(x|z) (MLPs, or convolutions:
:mod:`~vgae_toolkit.models.image_nets`; likelihoods: :mod:`~vgae_toolkit.models.image_decoders`), trained by maximising
the ELBO  E_q[log p(x|z)] - KL(q(z|x) || N(0, I))  with the reparameterisation trick and the
closed-form KL (the paper's estimator B, eq. 7). Passing ``num_classes`` gives the conditional
VAE of Sohn et al., https://papers.nips.cc/paper/5775: encoder q(z|x, y) and decoder p(x|z, y) also
see onehot(y), but the prior stays N(0, I), unconditioned; Sohn et al.'s prior is conditional (a prior
network p(z | condition)), which is not implemented here. ``variational=False`` gives the deterministic
auto-encoder: the posterior is a point mass at mu, there is no KL term, and its "ELBO" is the
reconstruction log-likelihood log p(x | z = mu). ``objective="iwae"`` trains on the importance-weighted
bound of Burda et al., https://arxiv.org/abs/1509.00519, instead of the ELBO (the IWAE).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.image_decoders import (
    DECODERS, BernoulliDecoder, ContinuousBernoulliDecoder, FixedGaussianDecoder, GaussianDecoder)
from vgae_toolkit.models.image_nets import ACTIVATIONS, ConvEncoder, MLPEncoder, make_nets, mlp
from vgae_toolkit.models.latent import Posterior, standard_normal_log_prob

# The model and its parts (the parts live in image_nets and image_decoders).
__all__ = ["VAE", "warmup_callback", "DECODERS", "ACTIVATIONS", "BernoulliDecoder", "ContinuousBernoulliDecoder",
           "FixedGaussianDecoder", "GaussianDecoder", "MLPEncoder", "ConvEncoder", "mlp"]

DecoderParams = Tensor | tuple[Tensor, Tensor]
# Training objectives: the ELBO (AEVB) or the importance-weighted bound of Burda et al. (model.objective).
OBJECTIVES = ("elbo", "iwae")


class VAE(nn.Module):
    """Variational auto-encoder (AEVB), conditional when ``num_classes`` is given, deterministic without
    ``variational``.

    The training loss is  -E_q[log p(x|z)] + w * KL(q(z|x) || N(0, I))  with the KL weight
    w = ``beta`` x the warm-up and cyclical factors; the reported ELBO always has w = 1. With ``objective="iwae"`` it
    is the negative importance-weighted bound with k = ``num_samples`` (Burda et al. 2016).

    Args:
        input_dim (int): pixels per image (784 for MNIST, 560 for Frey Face).
        latent_dim (int): size of z (default: 20).
        hidden (Sequence[int]): encoder hidden widths; the decoder mirrors them (default: (400,)).
        activation (str): hidden activation, ``tanh`` in the paper (default: ``relu``).
        decoder (str): a key of :data:`DECODERS`: ``bernoulli`` (default), ``continuous_bernoulli``,
            ``gaussian`` (mean, log-variance), ``gaussian_fixed`` (sigma = 1) or ``pixelcnn``
            (autoregressive: :mod:`~vgae_toolkit.models.autoregressive`).
        num_samples (int): reparameterised samples L per datapoint in the training ELBO.
        kl_warmup_epochs (int): the warm-up factor rises linearly from 0 to 1 over this many
            epochs (Sønderby et al., https://arxiv.org/abs/1602.02282); 0 = off.
        kl_cycle_epochs (int): cyclical KL annealing (Fu et al. 2019, https://arxiv.org/abs/1903.10145):
            the epochs are cut into cycles of this many; within a cycle the factor rises linearly from 0 to 1
            over the first ``kl_cycle_ramp`` share of it and stays at 1 for the rest; 0 = off (default).
            Like the warm-up, it moves once per epoch (set by :func:`warmup_callback`).
        kl_cycle_ramp (float): that share, their R, in (0, 1] (default: 0.5, as the paper).
        free_bits (float): nats per latent dimension below which the batch-mean KL is not
            penalised (Kingma et al., https://arxiv.org/abs/1606.04934); 0 = off.
        num_classes (int, optional): condition encoder and decoder on onehot(y) (a CVAE whose
            prior is still N(0, I), unconditioned, unlike Sohn et al.'s conditional prior).
        init_std (float, optional): draw every parameter from N(0, init_std^2) (paper: 0.01);
            ``None`` keeps PyTorch's default initialisation.
        min_logvar (float): log-variance floor of the ``gaussian`` decoder (default: -6.0).
        beta (float): constant KL weight of the beta-VAE (Higgins et al. 2017,
            https://openreview.net/forum?id=Sy2fzU9gl); 1 = the ELBO (default), 0 = no KL in training.
        variational (bool): ``False`` makes the posterior a point mass at mu: a deterministic
            auto-encoder trained on the reconstruction term alone (default: ``True``).
        objective (str): ``elbo`` (default) or ``iwae``: the importance-weighted bound of Burda et al.,
            https://arxiv.org/abs/1509.00519, with k = ``num_samples``; it needs ``beta`` = 1, no warm-up,
            no free bits and ``variational``.
        encoder (str or dict): ``mlp`` (default) or ``conv`` (with ``channels``); the decoder mirrors it.
        image_shape (Sequence[int], optional): ``(H, W)``, needed by ``conv``; the image task passes it.
    """

    kind = "image"

    def __init__(
        self,
        *,
        input_dim: int,
        latent_dim: int = 20,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        decoder: str = "bernoulli",
        num_samples: int = 1,
        kl_warmup_epochs: int = 0,
        kl_cycle_epochs: int = 0,
        kl_cycle_ramp: float = 0.5,
        free_bits: float = 0.0,
        num_classes: int | None = None,
        init_std: float | None = None,
        min_logvar: float = -6.0,
        beta: float = 1.0,
        variational: bool = True,
        objective: str = "elbo",
        encoder: str | dict = "mlp",
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder: expected one of {sorted(DECODERS)}, got {decoder!r}")
        if latent_dim < 1 or any(h < 1 for h in hidden):
            raise ConfigError(f"model.latent_dim and model.hidden must be positive, got {latent_dim} and {list(hidden)}")
        if num_samples < 1 or kl_warmup_epochs < 0 or free_bits < 0:
            raise ConfigError("model.num_samples must be >= 1, kl_warmup_epochs and free_bits >= 0")
        if not beta >= 0 or beta == float("inf"):
            raise ConfigError(f"model.beta: expected a finite number >= 0, got {beta}")
        if kl_cycle_epochs < 0 or not 0 < kl_cycle_ramp <= 1:
            raise ConfigError(f"model.kl_cycle_epochs must be >= 0 and model.kl_cycle_ramp in (0, 1], got "
                              f"{kl_cycle_epochs} and {kl_cycle_ramp}")
        if kl_cycle_epochs > 0 and (not variational or objective != "elbo"):
            raise ConfigError("model.kl_cycle_epochs anneals the ELBO's KL weight: it needs model.variational=true "
                              "and model.objective=elbo; leave it at 0")
        if not variational and (free_bits > 0 or kl_warmup_epochs > 0 or beta != 1):
            raise ConfigError("model.variational=false has no KL term: model.beta, model.kl_warmup_epochs and "
                              "model.free_bits would change nothing; leave them at 1, 0 and 0")
        if objective not in OBJECTIVES:
            raise ConfigError(f"model.objective: expected one of {list(OBJECTIVES)}, got {objective!r}")
        if objective == "iwae":  # the IWAE bound has no separate KL term to weigh, free or warm up
            clashes = [f"model.{key}={value}" for key, value, default in (
                ("beta", beta, 1), ("kl_warmup_epochs", kl_warmup_epochs, 0), ("free_bits", free_bits, 0),
                ("variational", str(variational).lower(), "true")) if value != default]
            if clashes:
                raise ConfigError(f"model.objective=iwae bounds log p(x) with importance weights and needs an "
                                  f"unweighted KL and a stochastic encoder; got {', '.join(clashes)} (leave "
                                  "model.beta=1, model.kl_warmup_epochs=0, model.free_bits=0, model.variational=true)")
        self.objective = objective
        self.input_dim, self.latent_dim, self.num_classes = input_dim, latent_dim, num_classes
        self.num_samples, self.kl_warmup_epochs, self.free_bits = num_samples, kl_warmup_epochs, free_bits
        self.beta, self.variational = float(beta), variational
        self.kl_cycle_epochs, self.kl_cycle_ramp = kl_cycle_epochs, float(kl_cycle_ramp)
        extra = num_classes or 0
        self.encoder, body = make_nets(encoder, input_dim=input_dim, extra=extra, latent_dim=latent_dim,
                                       hidden=list(hidden), activation=activation, variational=variational,
                                       image_shape=image_shape)
        kwargs = {"min_logvar": min_logvar} if decoder == "gaussian" else {}
        self.decoder = DECODERS[decoder](body, output_dim=input_dim, **kwargs)
        if init_std is not None:
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)
        self.epoch = 0

    # -- the KL weight: warm-up is the only training-schedule state, set explicitly by the run ----
    def set_epoch(self, epoch: int) -> None:
        """Tell the model how many epochs are complete (the Trainer callback's ``epoch``)."""
        self.epoch = epoch

    @property
    def kl_weight(self) -> float:
        """The training loss's KL weight: ``beta`` times the warm-up factor min(1, epoch / kl_warmup_epochs)
        times the cyclical factor min(1, tau / kl_cycle_ramp), tau = (epoch mod kl_cycle_epochs) / kl_cycle_epochs
        (Fu et al. 2019, eq. 4); ``epoch`` counts the completed epochs."""
        weight = self.beta
        if self.kl_warmup_epochs > 0:
            weight *= min(1.0, self.epoch / self.kl_warmup_epochs)
        if self.kl_cycle_epochs > 0:
            tau = (self.epoch % self.kl_cycle_epochs) / self.kl_cycle_epochs  # position in the cycle, [0, 1)
            weight *= min(1.0, tau / self.kl_cycle_ramp)
        return weight

    def describe(self) -> dict:
        """The parts and the meaning of the reported bound, for ``metrics.json``."""
        bound = ("ELBO: E_q[log p(x|z)] - KL(q(z|x) || N(0, I))" if self.variational else
                 "log p(x | z = mu): a deterministic auto-encoder has no KL term and no importance weights")
        return {"variational": self.variational, "encoder": type(self.encoder).__name__,
                "decoder": type(self.decoder).__name__, "beta": self.beta, "elbo_is": bound}

    # -- the model ----------------------------------------------------------------------
    def _with_label(self, t: Tensor, y: Tensor | None) -> Tensor:
        # An unconditional model ignores y, so callers may pass a batch's labels to any model.
        if self.num_classes is None:
            return t
        if y is None:
            raise ValueError("a conditional VAE (num_classes set) needs labels y")
        onehot = F.one_hot(y.long(), self.num_classes).to(t.dtype)  # [batch, classes]
        return torch.cat([t, onehot.expand(*t.shape[:-1], self.num_classes)], dim=-1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Posterior:
        """q(z|x) (or q(z|x, y)) for ``x`` of shape ``[batch, input_dim]``."""
        return self.encoder(self._with_label(x, y))

    def decode(self, z: Tensor, y: Tensor | None = None) -> DecoderParams:
        """Parameters of p(x|z): logits, or ``(mean, logvar)``; ``z`` may lead with a sample dim."""
        return self.decoder(self._with_label(z, y))

    def log_likelihood(self, x: Tensor, z_params: DecoderParams) -> Tensor:
        """log p(x|z) in nats, summed over pixels: ``[..., batch]``."""
        return self.decoder.log_likelihood(x, z_params)

    def elbo(
        self, x: Tensor, y: Tensor | None = None, num_samples: int = 1, analytic_kl: bool = True
    ) -> Tensor:
        """Per-datapoint ELBO in nats with KL weight 1 and no free bits, ``[batch]``; for a deterministic
        encoder, log p(x | z = mu).

        Args:
            num_samples (int): samples averaged in the reconstruction term.
            analytic_kl (bool): closed-form KL (estimator B, eq. 7) or the Monte Carlo
                log p(z) - log q(z|x) on the same samples (estimator A, eq. 6).
        """
        posterior = self.encode(x, y)
        z = posterior.rsample(num_samples)  # [samples, batch, latent]
        log_px = self.log_likelihood(x, self.decode(z, y))  # [samples, batch]
        if posterior.deterministic:
            return log_px.mean(0)
        if analytic_kl:
            return log_px.mean(0) - posterior.kl()
        return (log_px + standard_normal_log_prob(z) - posterior.log_prob(z)).mean(0)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mean negative ELBO over the batch (nats), with the KL weight (beta, warm-up) and free bits if set.

        ``recon`` is -E_q[log p(x|z)] and ``kl`` the unweighted KL, both batch means, so that
        ``loss = recon + kl`` exactly when beta = 1 and warm-up and free bits are off.

        With ``objective="iwae"`` the loss is instead the mean negative importance-weighted bound of
        Burda et al. with k = ``num_samples``: -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x),
        z_k ~ q(z|x); ``recon`` and ``kl`` still report the ELBO's two terms (over the same k draws), for the logs.
        """
        x, y = batch["x"], batch.get("y")
        posterior = self.encode(x, y)
        if self.objective == "iwae":
            z = posterior.rsample(self.num_samples)  # [k, batch, latent]
            log_px = self.log_likelihood(x, self.decode(z, y))  # [k, batch]
            log_w = log_px + standard_normal_log_prob(z) - posterior.log_prob(z)  # [k, batch]
            bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_samples)  # [batch]
            with torch.no_grad():
                recon, kl = -log_px.mean(), posterior.kl().mean()
            return {"loss": -bound.mean(), "recon": recon, "kl": kl}
        if self.num_samples == 1 and self.free_bits == 0:
            # The same draw and values as below, with the sample and the KL as one autograd node.
            z, kl = posterior.rsample_and_mean_kl()
            recon = self.decoder.mean_nll(x, self.decode(z.unsqueeze(0), y))
            return {"loss": recon + self.kl_weight * kl, "recon": recon, "kl": kl}
        z = posterior.rsample(self.num_samples)  # [samples, batch, latent]
        recon = self.decoder.mean_nll(x, self.decode(z, y))
        kl_per_dim = posterior.kl_per_dim()  # [batch, latent]
        kl = kl_per_dim.sum(-1).mean()
        kl_term = kl_per_dim.mean(0).clamp(min=self.free_bits).sum() if self.free_bits > 0 else kl
        return {"loss": recon + self.kl_weight * kl_term, "recon": recon, "kl": kl}

    # -- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num: int, y: Tensor | int | None = None) -> Tensor:
        """Decoder means for ``num`` draws z ~ N(0, I), ``[num, input_dim]``; ``y`` picks the class."""
        device = next(self.parameters()).device
        if isinstance(y, int):
            y = torch.full((num,), y, dtype=torch.long, device=device)
        elif y is not None:
            y = y.to(device)
        z = torch.randn(num, self.latent_dim, device=device)  # [num, latent]
        return self.decoder.mean(self.decode(z, y))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decoder mean at the posterior mean z = mu, ``[batch, input_dim]``."""
        return self.decoder.mean(self.decode(self.encode(x, y).mu, y))


def warmup_callback(epoch: int, record: dict, model: nn.Module) -> None:
    """Trainer callback that advances the KL warm-up of any model with ``set_epoch``."""
    if hasattr(model, "set_epoch"):
        model.set_epoch(epoch)

