"""Edge decoders: the logit of a link between the two nodes of each index pair.

Every decoder is called as ``decoder(z, pairs)`` with ``z`` ``[N, d]`` and ``pairs`` ``[2, P]`` and
returns ``[P]`` logits, so a new decoder is one class here and one config file in
``conf/model/decoder/``.
"""
from __future__ import annotations

from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.ops.hadamard import hadamard_mlp


class InnerProductDecoder(nn.Module):
    """p(A_ij = 1 | z_i, z_j) = sigma(z_i . z_j) (Kipf & Welling 2016, https://arxiv.org/abs/1611.07308).

    The graph auto-encoder recognises it and computes its losses with the fused kernels of
    :mod:`vgae_toolkit.ops` (the dense loss over all N^2 pairs without an N x N matrix, the sampled
    loss without gathering rows twice); this module is the plain definition.
    """

    fused = True  # the model's fast paths apply

    def forward(self, z: Tensor, pairs: Tensor) -> Tensor:
        return (z[pairs[0]] * z[pairs[1]]).sum(dim=-1)


class HadamardMLPDecoder(nn.Module):
    """An MLP on the element-wise product z_i * z_j: symmetric in i and j, and more expressive than
    the inner product (the edge decoder of masked graph auto-encoders, e.g. MaskGAE,
    https://arxiv.org/abs/2205.10053).

    Args:
        latent (int): size of z (filled in from the encoder).
        hidden (list[int]): widths of the hidden layers. (default: ``[64]``)
        dropout (float): dropout before every layer. (default: ``0.0``)
        dropout_last (bool): dropout before the output layer too; ``False``: before the hidden
            layers only, as MaskGAE's edge decoder. (default: ``True``)
    """

    fused = False

    def __init__(self, *, latent: int, hidden: list[int] | tuple[int, ...] = (64,), dropout: float = 0.0,
                 dropout_last: bool = True) -> None:
        super().__init__()
        widths = [latent, *hidden]
        if any(w < 1 for w in widths):
            raise ConfigError(f"model.decoder.hidden: widths must be positive, got {list(hidden)}")
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Dropout(dropout), nn.Linear(a, b), nn.ReLU()]
        layers += [nn.Dropout(dropout if dropout_last else 0.0), nn.Linear(widths[-1], 1)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: Tensor, pairs: Tensor) -> Tensor:
        first, last = self.mlp[1], self.mlp[-1]
        if len(self.mlp) == 5 and not (self.training and self.mlp[3].p > 0):
            # one hidden layer, no dropout before the output: the same function, in cache-sized chunks
            return hadamard_mlp(z, pairs, first.weight, first.bias, last.weight, last.bias, self.mlp[0].p,
                                self.training)
        # index_select: the same rows as z[pairs[i]], with a cheaper backward pass on the CPU
        return self.mlp(z.index_select(0, pairs[0]) * z.index_select(0, pairs[1])).squeeze(-1)


DECODERS = {"inner_product": InnerProductDecoder, "hadamard_mlp": HadamardMLPDecoder}


def make_decoder(name: str, latent: int, **kwargs) -> nn.Module:
    """The decoder called ``name`` (``inner_product``, ``hadamard_mlp``) for codes of size ``latent``."""
    if name not in DECODERS:
        raise ConfigError(f"model.decoder.name={name!r}: expected one of {sorted(DECODERS)}")
    if name == "inner_product":
        if kwargs:
            raise ConfigError(f"model.decoder: the inner product takes no settings, got {sorted(kwargs)}")
        return InnerProductDecoder()
    return DECODERS[name](latent=latent, **kwargs)
