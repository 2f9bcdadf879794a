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

    With ``every = k > 1`` the adversary acts on every k-th training step only: D's steps and the
    encoder's adversarial loss come on that step, and the k - 1 steps before it are reconstruction
    alone (the loss entry is 0 there and D is not evaluated). This is the schedule of the reference code of
    Pan et al. 2018 (per iteration: five reconstruction steps, then one discriminator and one generator
    step), within a trainer that takes one loss per step. The training steps are counted in a buffer
    (``calls``), so a resumed run keeps the schedule.

    Args:
        latent (int): size of the codes (filled in from the encoder).
        hidden (int): discriminator width. (default: ``64``)
        lr (float): the discriminator's Adam learning rate. (default: ``0.001``)
        steps (int): discriminator steps per training step. (default: ``5``)
        weight (float): weight of the encoder's adversarial loss next to the reconstruction loss.
            (default: ``1.0``)
        every (int): the adversary acts on every ``every``-th training step. (default: ``1``: each step)

    The shipped config (``conf/model/regulariser/adversarial.yaml``, used by the ARGA and ARGVA
    presets) sets ``lr=0.0001`` and ``steps=1``, chosen on validation splits: next to the trainer's
    Adam at 0.01, a discriminator at 0.001 or with 5 steps wins and costs validation AUC. The ARGA
    preset (``conf/model/arga.yaml``) adds ``every=5``.
    """

    def __init__(self, *, latent: int, hidden: int = 64, lr: float = 0.001, steps: int = 5,
                 weight: float = 1.0, every: int = 1) -> None:
        super().__init__()
        if hidden < 1 or steps < 1 or every < 1 or not lr > 0 or not weight >= 0:
            raise ConfigError(f"model.regulariser: hidden, steps and every must be at least 1, lr positive and "
                              f"weight non-negative, got hidden={hidden}, steps={steps}, every={every}, lr={lr}, "
                              f"weight={weight}")
        self.discriminator = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                           nn.ReLU(), nn.Linear(hidden, 1))
        self.lr, self.steps, self.weight, self.every = lr, steps, weight, int(every)
        if self.every > 1:  # only then: the weights of every = 1 keep their former keys
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self._optimizer: torch.optim.Optimizer | None = None

    def discriminator_loss(self, z: Tensor) -> Tensor:
        """-log D(prior sample) - log(1 - D(z)), means over nodes."""
        real = self.discriminator(torch.randn_like(z)).squeeze(-1)
        fake = self.discriminator(z).squeeze(-1)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        disc = z.new_zeros(())
        if self.training and self.every > 1:
            self.calls += 1
            if int(self.calls) % self.every:  # a reconstruction-only step of the schedule
                return {"loss": z.new_zeros(()), "disc": disc}
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
