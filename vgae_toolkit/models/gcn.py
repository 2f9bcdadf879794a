"""The built-in graph convolutions over a cached Â: the fast path of the GAE/VGAE encoders.

Kipf & Welling, *Variational Graph Auto-Encoders* (https://arxiv.org/abs/1611.07308): a two-layer
GCN over Â = D^-1/2 (A + I) D^-1/2; and the linear encoder of Salha et al. 2020
(https://arxiv.org/abs/1910.00942). Â is normalised once per run and multiplied as a cached CSR
matrix (:mod:`vgae_toolkit.ops.sparse`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import glorot, zeros

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.ops.sparse import SparseMatrix


class GCNLayer(nn.Module):
    """One graph convolution Â X W + b (Kipf & Welling 2017) on a cached sparse Â.

    Equal to ``torch_geometric.nn.GCNConv`` with the normalisation done once up front
    (Glorot weights, zero bias), but it multiplies by the cached CSR matrices directly
    instead of running message passing on every call; sparse features stay sparse.

    Args:
        in_channels, out_channels (int): the weight is ``[in_channels, out_channels]``.
        bias (bool): add a bias.
        blocks (int): initialise the weight as this many equal blocks of columns, each Glorot for
            its own width: one layer that computes several heads side by side, each initialised as
            a layer of its own would be (and with the same random numbers, in order).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, blocks: int = 1) -> None:
        super().__init__()
        if out_channels % blocks:
            raise ValueError(f"out_channels {out_channels} is not {blocks} equal blocks")
        self.blocks = blocks
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for block in self.weight.chunk(self.blocks, dim=1):
            glorot(block)
        if self.bias is not None:
            zeros(self.bias)

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> Tensor:
        h = self.weight if x is None else x @ self.weight  # x = None: featureless, X = I
        h = adj @ h  # a new tensor: the bias is added in place
        return h if self.bias is None else h.add_(self.bias)


class GCNEncoder(nn.Module):
    """Two GCN layers: H = ReLU(Â X W0); mu = Â H W_mu; log sigma = Â H W_sigma (VGAE only).

    The adjacency is normalised once by the caller and passed as a :class:`SparseMatrix`, so
    nothing is recomputed per epoch. Without features the first layer is a learnable
    per-node embedding: Â I W0 = Â W0, never a dense identity matrix. The VGAE's two heads are one
    second layer, ``conv2``, with weight [W_mu | W_sigma] (and bias [b_mu | b_sigma]): one product
    with Â for both, and its output is the packed posterior (:meth:`Posterior.from_packed`).
    Each head is initialised as a layer of its own would be, so this is the paper's model, with
    the same initial weights as two separate layers drawn in order.

    Args:
        in_channels (int, optional): feature size; ``None`` for featureless input.
        num_nodes (int): nodes of the graph (size of the featureless embedding).
        hidden (int): first-layer width (paper: 32).
        latent (int): latent size (paper: 16).
        variational (bool): add the log-sigma head (VGAE) or not (GAE).
        dropout (float): dropout on hidden activations (reference code: 0).
        bias (bool): add a bias to each layer (the reference code's GCN layers have none;
            PyG's ``GCNConv`` has one).
        noise (float): standard deviation of Gaussian noise added to the hidden activations in
            training mode only (ARGA, Pan et al. 2018, https://arxiv.org/abs/1802.04407: 0.1 in its
            reference code). (default: ``0.0``: none)
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 32, latent: int = 16,
                 variational: bool = True, dropout: float = 0.0, bias: bool = True, noise: float = 0.0) -> None:
        super().__init__()
        if hidden < 1 or latent < 1:
            raise ConfigError(f"model.hidden and model.latent must be positive, got {hidden} and {latent}")
        if not noise >= 0:
            raise ConfigError(f"model.noise must be non-negative, got {noise}")
        self.dropout, self.variational, self.noise = dropout, variational, float(noise)
        self.conv1 = GCNLayer(num_nodes if in_channels is None else in_channels, hidden, bias)
        heads = 2 if variational else 1
        self.conv2 = GCNLayer(hidden, heads * latent, bias, blocks=heads)

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> Posterior:
        h = self.conv1(x, adj).relu_()  # [num_nodes, hidden]; conv1's output is its own
        if self.noise and self.training:  # no random numbers drawn when off: other models' runs are unchanged
            h = h + self.noise * torch.randn_like(h)
        if self.dropout:
            h = F.dropout(h, self.dropout, self.training)
        out = self.conv2(h, adj)  # Â H [W_mu | W_sigma] = [Â H W_mu | Â H W_sigma]: [num_nodes, heads * latent]
        return Posterior.from_packed(out) if self.variational else Posterior(out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved when the heads were two layers, conv_mu and conv_logstd: joined into conv2
        for name in ("weight", "bias"):
            parts = [state_dict.pop(f"{prefix}{head}.{name}", None) for head in ("conv_mu", "conv_logstd")]
            parts = [part for part in parts if part is not None]
            if parts and f"{prefix}conv2.{name}" not in state_dict:
                state_dict[f"{prefix}conv2.{name}"] = torch.cat(parts, dim=-1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class LinearEncoder(nn.Module):
    """One linear graph convolution: mu = Â X W_mu, log sigma = Â X W_sigma (VGAE only).

    The linear graph auto-encoders of Salha et al., *Keep It Simple: Graph Autoencoders Without
    Graph Convolutional Networks* (https://arxiv.org/abs/1910.00942): no hidden layer, no
    activation, the same cached Â as :class:`GCNEncoder`.

    Args:
        in_channels (int, optional): feature size; ``None`` for featureless input.
        num_nodes (int): nodes of the graph.
        latent (int): latent size.
        variational (bool): add the log-sigma head.
        bias (bool): add a bias.
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, latent: int = 16, variational: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        if latent < 1:
            raise ConfigError(f"model.latent must be positive, got {latent}")
        heads = 2 if variational else 1
        self.variational = variational
        self.conv = GCNLayer(num_nodes if in_channels is None else in_channels, heads * latent, bias, blocks=heads)

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> Posterior:
        out = self.conv(x, adj)  # [num_nodes, heads * latent]
        return Posterior.from_packed(out) if self.variational else Posterior(out)
