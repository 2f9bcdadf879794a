"""Regularisers of the latent codes: the KL to the prior (VGAE) or an adversary (ARGA/ARGVA).

A regulariser is called with the codes ``z`` ``[N, d]`` the decoder sees and returns its loss terms
as a dict; the graph auto-encoder adds ``weight * value`` of its ``"loss"`` entry to the
reconstruction loss. The KL needs the posterior, not the sample, so the model computes it itself
(:meth:`~vgae_toolkit.models.latent.Posterior.rsample_and_mean_kl`); this module holds the adversary.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from vgae_toolkit.errors import ConfigError


class AdversarialRegulariser(nn.Module):
    """Adversarially regularised graph auto-encoders (Pan et al. 2018, https://arxiv.org/abs/1802.04407).

    A discriminator D (an MLP, ``latent -> hidden -> hidden -> 1``) learns to tell prior samples
    ``N(0, I)`` (real) from the encoder's codes (fake), in ``steps`` Adam steps of its own per
    training step; the encoder is then trained to fool it: its loss is ``-log D(z)``, computed with
    D's weights held fixed (no gradient reaches D from the encoder's loss, so the trainer's
    optimiser never moves D). Shapes and step counts follow PyG's ARGA example.

    Args:
        latent (int): size of the codes (filled in from the encoder).
        hidden (int): discriminator width. (default: ``64``)
        lr (float): the discriminator's Adam learning rate. (default: ``0.001``)
        steps (int): discriminator steps per training step. (default: ``5``)
        weight (float): weight of the encoder's adversarial loss next to the reconstruction loss.
            (default: ``1.0``)

    The shipped config (``conf/model/regulariser/adversarial.yaml``, used by the ARGA and ARGVA
    presets) sets ``lr=0.0001`` and ``steps=1``, chosen on validation splits: next to the trainer's
    Adam at 0.01, a discriminator at 0.001 or with 5 steps wins and costs validation AUC.
    """

    def __init__(self, *, latent: int, hidden: int = 64, lr: float = 0.001, steps: int = 5,
                 weight: float = 1.0) -> None:
        super().__init__()
        if hidden < 1 or steps < 1 or not lr > 0 or not weight >= 0:
            raise ConfigError(f"model.regulariser: hidden and steps must be at least 1, lr positive and weight "
                              f"non-negative, got hidden={hidden}, steps={steps}, lr={lr}, weight={weight}")
        self.discriminator = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                           nn.ReLU(), nn.Linear(hidden, 1))
        self.lr, self.steps, self.weight = lr, steps, weight
        self._optimizer: torch.optim.Optimizer | None = None

    def discriminator_loss(self, z: Tensor) -> Tensor:
        """-log D(prior sample) - log(1 - D(z)), means over nodes."""
        real = self.discriminator(torch.randn_like(z)).squeeze(-1)
        fake = self.discriminator(z).squeeze(-1)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        disc = z.new_zeros(())
        if self.training:  # the adversary's own steps, on codes it cannot change
            if self._optimizer is None:
                self._optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr)
            codes = z.detach()
            for _ in range(self.steps):
                self._optimizer.zero_grad(set_to_none=True)
                disc = self.discriminator_loss(codes)
                disc.backward()
                self._optimizer.step()
            for p in self.discriminator.parameters():  # the trainer's step must not move D
                p.grad = None
            disc = disc.detach()
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (z,)).squeeze(-1)
        fool = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # -log D(z)
        return {"loss": self.weight * fool, "disc": disc}
