"""The variational auto-encoder on flat images, and its conditional variant.

Kingma & Welling, Auto-Encoding Variational Bayes (AEVB), https://arxiv.org/abs/1312.6114:
an MLP encoder q(z|x) = N(mu, diag sigma^2), an MLP decoder p(x|z), trained by maximising
the ELBO  E_q[log p(x|z)] - KL(q(z|x) || N(0, I))  with the reparameterisation trick and the
closed-form KL (the paper's estimator B, eq. 7). Passing ``num_classes`` gives the conditional
VAE of Sohn et al., https://papers.nips.cc/paper/5775: encoder q(z|x, y) and decoder p(x|z, y) also
see onehot(y), but the prior stays N(0, I), unconditioned; Sohn et al.'s prior is conditional (a prior
network p(z | condition)), which is not implemented here.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import Posterior, normal_log_prob, standard_normal_log_prob

ACTIVATIONS = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "softplus": nn.Softplus, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
}
DecoderParams = Tensor | tuple[Tensor, Tensor]


def mlp(in_dim: int, hidden: Sequence[int], activation: str) -> nn.Sequential:
    """Hidden layers only (Linear + activation each); the output heads are added by the caller."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """q(z|x) = N(mu, diag sigma^2) from an MLP with two linear heads (AEVB App. C.2).

    Args:
        input_dim (int): size of the (flattened, possibly label-augmented) input.
        latent_dim (int): size of z.
        hidden (Sequence[int]): hidden widths (paper: one layer, 500 MNIST / 200 Frey Face).
        activation (str): ``tanh`` (paper), ``relu``, ``elu``, ...
    """

    def __init__(self, *, input_dim: int, latent_dim: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, activation)
        width = hidden[-1] if len(hidden) else input_dim
        self.mu = nn.Linear(width, latent_dim)
        # The head predicts log sigma (not log sigma^2), as Posterior expects.
        self.logstd = nn.Linear(width, latent_dim)

    def forward(self, x: Tensor) -> Posterior:
        h = self.body(x)  # [batch, hidden]
        return Posterior(self.mu(h), self.logstd(h))  # [batch, latent] each


class BernoulliDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(logits_d)) (AEVB App. C.1); returns the logits."""

    def __init__(self, *, input_dim: int, output_dim: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, activation)
        self.logits = nn.Linear(hidden[-1] if len(hidden) else input_dim, output_dim)

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


class GaussianDecoder(nn.Module):
    """p(x|z) = N(x; m, diag exp(logvar)) with m = sigmoid(.) (AEVB App. C.2, as for Frey Face).

    Args:
        min_logvar (float): floor on the predicted log-variance; without it a pixel that is
            constant in the data drives the variance to 0 and the likelihood to infinity.
    """

    def __init__(
        self, *, input_dim: int, output_dim: int, hidden: Sequence[int], activation: str, min_logvar: float = -6.0
    ) -> None:
        super().__init__()
        self.body = mlp(input_dim, hidden, activation)
        width = hidden[-1] if len(hidden) else input_dim
        self.mean_head = nn.Linear(width, output_dim)
        self.logvar_head = nn.Linear(width, output_dim)
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


DECODERS = {"bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder}


class VAE(nn.Module):
    """Variational auto-encoder (AEVB), conditional when ``num_classes`` is given.

    Args:
        input_dim (int): pixels per image (784 for MNIST, 560 for Frey Face).
        latent_dim (int): size of z (default: 20).
        hidden (Sequence[int]): encoder hidden widths; the decoder mirrors them (default: (400,)).
        activation (str): hidden activation, ``tanh`` in the paper (default: ``relu``).
        decoder (str): ``bernoulli`` (logits) or ``gaussian`` (mean, log-variance).
        num_samples (int): reparameterised samples L per datapoint in the training ELBO.
        kl_warmup_epochs (int): KL weight beta rises linearly from 0 to 1 over this many
            epochs (Sønderby et al., https://arxiv.org/abs/1602.02282); 0 = off.
        free_bits (float): nats per latent dimension below which the batch-mean KL is not
            penalised (Kingma et al., https://arxiv.org/abs/1606.04934); 0 = off.
        num_classes (int, optional): condition encoder and decoder on onehot(y) (a CVAE whose
            prior is still N(0, I), unconditioned, unlike Sohn et al.'s conditional prior).
        init_std (float, optional): draw every parameter from N(0, init_std^2) (paper: 0.01);
            ``None`` keeps PyTorch's default initialisation.
        min_logvar (float): log-variance floor of the Gaussian decoder.
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
        free_bits: float = 0.0,
        num_classes: int | None = None,
        init_std: float | None = None,
        min_logvar: float = -6.0,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"model.decoder: expected one of {sorted(DECODERS)}, got {decoder!r}")
        if latent_dim < 1 or any(h < 1 for h in hidden):
            raise ConfigError(f"model.latent_dim and model.hidden must be positive, got {latent_dim} and {list(hidden)}")
        if num_samples < 1 or kl_warmup_epochs < 0 or free_bits < 0:
            raise ConfigError("model.num_samples must be >= 1, kl_warmup_epochs and free_bits >= 0")
        self.input_dim, self.latent_dim, self.num_classes = input_dim, latent_dim, num_classes
        self.num_samples, self.kl_warmup_epochs, self.free_bits = num_samples, kl_warmup_epochs, free_bits
        extra = num_classes or 0
        hidden = list(hidden)
        self.encoder = MLPEncoder(
            input_dim=input_dim + extra, latent_dim=latent_dim, hidden=hidden, activation=activation
        )
        kwargs = {"min_logvar": min_logvar} if decoder == "gaussian" else {}
        self.decoder = DECODERS[decoder](
            input_dim=latent_dim + extra, output_dim=input_dim, hidden=hidden[::-1], activation=activation, **kwargs
        )
        if init_std is not None:
            for p in self.parameters():
                nn.init.normal_(p, 0.0, init_std)
        self.epoch = 0

    # -- KL warm-up: the only training-schedule state, set explicitly by the run ----------
    def set_epoch(self, epoch: int) -> None:
        """Tell the model how many epochs are complete (the Trainer callback's ``epoch``)."""
        self.epoch = epoch

    @property
    def beta(self) -> float:
        if self.kl_warmup_epochs == 0:
            return 1.0
        return min(1.0, self.epoch / self.kl_warmup_epochs)

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
        """Per-datapoint ELBO in nats with beta = 1 and no free bits, ``[batch]``.

        Args:
            num_samples (int): samples averaged in the reconstruction term.
            analytic_kl (bool): closed-form KL (estimator B, eq. 7) or the Monte Carlo
                log p(z) - log q(z|x) on the same samples (estimator A, eq. 6).
        """
        posterior = self.encode(x, y)
        z = posterior.rsample(num_samples)  # [samples, batch, latent]
        log_px = self.log_likelihood(x, self.decode(z, y))  # [samples, batch]
        if analytic_kl:
            return log_px.mean(0) - posterior.kl()
        return (log_px + standard_normal_log_prob(z) - posterior.log_prob(z)).mean(0)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mean negative ELBO over the batch (nats), with KL warm-up and free bits if set.

        ``recon`` is -E_q[log p(x|z)] and ``kl`` the unweighted KL, both batch means, so that
        ``loss = recon + kl`` exactly when warm-up and free bits are off.
        """
        x, y = batch["x"], batch.get("y")
        posterior = self.encode(x, y)
        if self.num_samples == 1 and self.free_bits == 0:
            # The same draw and values as below, with the sample and the KL as one autograd node.
            z, kl = posterior.rsample_and_mean_kl()
            recon = self.decoder.mean_nll(x, self.decode(z.unsqueeze(0), y))
            return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}
        z = posterior.rsample(self.num_samples)  # [samples, batch, latent]
        recon = self.decoder.mean_nll(x, self.decode(z, y))
        kl_per_dim = posterior.kl_per_dim()  # [batch, latent]
        kl = kl_per_dim.sum(-1).mean()
        kl_term = kl_per_dim.mean(0).clamp(min=self.free_bits).sum() if self.free_bits > 0 else kl
        return {"loss": recon + self.beta * kl_term, "recon": recon, "kl": kl}

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

