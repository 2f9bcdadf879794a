"""Graph encoders beyond the built-in GCN: any ``torch_geometric.nn`` convolution, or a user's module.

Every encoder maps the node features and the training graph to the posterior's parameters: ``[N, d]``
(GAE, ARGA), ``[N, 2d]`` with the halves mu and log sigma, or a pair ``(mu, logstd)`` (VGAE, ARGVA).
:func:`to_posterior` turns any of these into a :class:`~vgae_toolkit.models.latent.Posterior`.

A message-passing encoder is called as ``encoder(x, edge_index)``, or ``encoder(x, edge_index,
edge_weight)`` when the graph is weighted, with ``edge_index`` the training edges in both directions
(cached once per run). Without node features, ``x`` is a learnable ``[N, width]`` embedding, the
counterpart of the built-in GCN's per-node first-layer weights.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.ops.attention import (SELF_LOOP_CONVS, AttentionPlan, _feature_linear, fused_attention,
                                        fused_mean, gat_forward, mean_adjacency, sage_forward)
from vgae_toolkit.ops.sparse import SparseMatrix, maybe_sparse

ACTIVATIONS = {"relu": F.relu, "elu": F.elu, "prelu": None, "tanh": torch.tanh, "leaky_relu": F.leaky_relu,
               "gelu": F.gelu, "identity": lambda h: h}


def conv_class(name: str) -> type[nn.Module]:
    """The ``torch_geometric.nn`` convolution called ``name`` (``GATConv``, ``SAGEConv``, ...)."""
    import torch_geometric.nn as pyg_nn

    cls = getattr(pyg_nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, pyg_nn.MessagePassing)):
        known = sorted(n for n in dir(pyg_nn) if n.endswith("Conv"))
        raise ConfigError(f"model.encoder.conv={name!r} is not a torch_geometric.nn convolution; "
                          f"expected one of {', '.join(known)}")
    return cls


def accepts_edge_weight(module: nn.Module) -> bool:
    """Whether ``module.forward`` takes an ``edge_weight`` argument."""
    return "edge_weight" in inspect.signature(module.forward).parameters


class MessagePassingEncoder(nn.Module):
    """``layers`` convolutions of one ``torch_geometric.nn`` kind, the last one to the latent size.

    ``h = act(norm(conv_1(x)))`` ... then ``conv_L(h)`` with ``latent`` (GAE) or ``2 * latent``
    (VGAE: mu and log sigma side by side) outputs. Convolutions that need an inner network (GIN)
    get a two-layer MLP of the layer's width.

    What depends on the graph alone is done once per graph, not per call: ``GATConv`` and
    ``GATv2Conv`` layers get the self-loops added up front (and are built with
    ``add_self_loops=False``); sparse features (at most a quarter non-zero) are projected by the
    first layer's linear map as a sparse product; on the CPU, ``GATConv`` layers sum their attention-
    weighted neighbours as one weighted bag product per layer (:func:`gat_forward`) instead of
    gathering and scattering ``[E, heads, C]`` messages; mean-aggregating ``SAGEConv`` layers apply
    their linear map before averaging (:func:`sage_forward`: the same sums over the narrow outputs
    instead of the wide inputs, one sparse product per layer). The parameters, their names and the
    numbers are those of the plain convolutions (up to float rounding; tested).

    Args:
        in_channels (int, optional): feature size; ``None`` for featureless input (a learnable
            ``[num_nodes, hidden]`` embedding is the input).
        num_nodes (int): nodes of the graph.
        conv (str): a ``torch_geometric.nn`` class name, e.g. ``GATConv``, ``SAGEConv``, ``GINConv``.
        hidden (int): width of the hidden layers. (default: ``32``)
        latent (int): latent size. (default: ``16``)
        layers (int): number of convolutions, the last included. (default: ``2``)
        variational (bool): output ``2 * latent`` (mu, log sigma). (default: ``True``)
        activation (str): between layers: ``relu``, ``elu``, ``prelu``, ``tanh``, ``leaky_relu``,
            ``gelu`` or ``identity``. (default: ``relu``)
        dropout (float): on the input of every layer but the first. (default: ``0.0``)
        input_dropout (float): on the features. (default: ``0.0``)
        batch_norm (bool): batch normalisation after every hidden layer. (default: ``False``)
        heads (int): attention heads of hidden layers (GAT-like convolutions); each head has
            ``hidden // heads`` channels, concatenated. The last layer has one head. (default: ``1``)
        conv_kwargs (dict, optional): further keyword arguments of every convolution.
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, conv: str, hidden: int = 32, latent: int = 16,
                 layers: int = 2, variational: bool = True, activation: str = "relu", dropout: float = 0.0,
                 input_dropout: float = 0.0, batch_norm: bool = False, heads: int = 1,
                 conv_kwargs: dict | None = None) -> None:
        super().__init__()
        cls = conv_class(conv)
        if layers < 1 or hidden < 1 or latent < 1 or heads < 1:
            raise ConfigError("model.encoder: layers, hidden, latent and heads must be at least 1")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.encoder.activation={activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if heads > 1 and hidden % heads:
            raise ConfigError(f"model.encoder.hidden={hidden} must be a multiple of model.encoder.heads={heads}")
        self.embedding = nn.Parameter(torch.empty(num_nodes, hidden)) if in_channels is None else None
        if self.embedding is not None:
            nn.init.xavier_uniform_(self.embedding)
        widths = [hidden if in_channels is None else in_channels] + [hidden] * (layers - 1)
        out = (2 if variational else 1) * latent
        self.convs = nn.ModuleList()
        for i, width in enumerate(widths):
            last = i == layers - 1
            self.convs.append(self._conv(cls, width, out if last else hidden, 1 if last else heads, conv_kwargs or {}))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers - 1)) if batch_norm else None
        self.acts = nn.ModuleList(nn.PReLU(hidden) for _ in range(layers - 1)) if activation == "prelu" else None
        self.activation, self.dropout, self.input_dropout = ACTIVATIONS[activation], dropout, input_dropout
        self.weighted = accepts_edge_weight(self.convs[0])  # whether edge weights reach the convolutions
        # Work that depends on the graph and the features alone, done once per graph rather than per call:
        # self-loops added for the convolutions that would add them every call, and a sparse copy of
        # sparse features for a first layer that projects them with one linear map (GATConv's `lin`).
        self.self_loops = False
        if conv in SELF_LOOP_CONVS and all(getattr(c, "add_self_loops", False) and getattr(c, "edge_dim", 1) is None
                                           for c in self.convs):
            for c in self.convs:
                c.add_self_loops = False
            self.self_loops = True
        lin = getattr(self.convs[0], "lin", None)
        self.sparse_features = in_channels is not None and isinstance(lin, nn.Module) and _feature_linear(lin)
        # attention layers aggregated without materialising their [E, heads, C] messages (gat_forward)
        self.fused = [self.self_loops and fused_attention(c) for c in self.convs]
        # mean-aggregating SAGEConv layers: projected before averaging, as one sparse product (sage_forward)
        self.averaged = [fused_mean(c) for c in self.convs]
        self._graph: tuple | None = None  # (edge_index, its version, edge_index with self-loops, AttentionPlan)
        self._mean: tuple | None = None  # (edge_index, its version and node count, mean_adjacency)
        self._features: tuple | None = None  # (x, its version, sparse copy or None)

    @staticmethod
    def _conv(cls: type[nn.Module], width: int, out: int, heads: int, kwargs: dict) -> nn.Module:
        params = inspect.signature(cls.__init__).parameters
        if "nn" in params and "in_channels" not in params:  # GIN-like: the convolution wraps an MLP
            mlp = nn.Sequential(nn.Linear(width, out), nn.ReLU(), nn.Linear(out, out))
            return cls(mlp, **kwargs)
        if "heads" in params:
            return cls(width, out // heads, heads=heads, **kwargs)
        return cls(width, out, **kwargs)

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        if edge_weight is not None and not self.weighted:
            raise ConfigError(f"{type(self.convs[0]).__name__} takes no edge_weight: drop the weights or use a "
                              f"convolution that takes them (gcn, graphconv)")
        if self.self_loops:
            edge_index = self._with_self_loops(edge_index, x.size(0) if x is not None else self.embedding.size(0))
        if x is None:
            h = self.embedding
        elif self.input_dropout > 0 and self.training:
            h = F.dropout(x, self.input_dropout, True)
        else:
            h = x
        for i, conv in enumerate(self.convs):
            if i:
                h = F.dropout(h, self.dropout, self.training)
            h = self._layer(i, conv, h, edge_index, edge_weight)
            if i < len(self.convs) - 1:
                if self.norms is not None:
                    h = self.norms[i](h)
                h = self.acts[i](h) if self.acts is not None else self.activation(h)
        return h  # [num_nodes, latent] or [num_nodes, 2 * latent]

    def _layer(self, i: int, conv: nn.Module, h: Tensor, edge_index: Tensor, edge_weight: Tensor | None) -> Tensor:
        """Convolution ``i`` in its cheapest exact form: projected before averaging (SAGE), the attention sum
        as one bag product (GAT on the CPU), sparse features as a sparse product, else the layer itself."""
        if self.averaged[i]:  # SAGEConv takes no edge weights (refused in forward)
            sparse = self._sparse_copy(h) if i == 0 else None
            return sage_forward(conv, h, self._mean_adjacency(edge_index, h.size(0), conv.lin_l.weight.dtype), sparse)
        sparse = self._sparse_copy(h) if i == 0 and self.sparse_features else None
        if sparse is not None:
            conv.lin.sparse_input = (h, sparse)
        try:
            if self.fused[i] and edge_weight is None and h.device.type == "cpu":
                return gat_forward(conv, h, self._graph[3])  # the plan _with_self_loops made for edge_index
            return conv(h, edge_index, edge_weight) if edge_weight is not None else conv(h, edge_index)
        finally:
            if sparse is not None:
                conv.lin.sparse_input = None

    def _with_self_loops(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        """``edge_index`` without its self-loops, then with one per node: what the convolutions did per call."""
        cached = self._graph
        if cached is not None and cached[0] is edge_index and cached[1] == (edge_index._version, num_nodes):
            return cached[2]
        from torch_geometric.utils import add_self_loops, remove_self_loops

        looped = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)[0]
        plan = AttentionPlan(looped, num_nodes) if any(self.fused) else None
        if plan is not None:
            looped = plan.edge_index  # sorted by destination: the unfused layers see the same edges
        self._graph = (edge_index, (edge_index._version, num_nodes), looped, plan)
        return looped

    def _mean_adjacency(self, edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> SparseMatrix:
        """:func:`mean_adjacency` of ``edge_index``, built once per graph."""
        key = (edge_index._version, num_nodes, dtype, edge_index.device)
        if self._mean is None or self._mean[0] is not edge_index or self._mean[1] != key:
            self._mean = (edge_index, key, mean_adjacency(edge_index, num_nodes, dtype))
        return self._mean[2]

    def _sparse_copy(self, x: Tensor) -> SparseMatrix | None:
        """A sparse copy of constant CPU features with at most a quarter non-zero (``None``: multiply densely)."""
        if x.requires_grad or x.device.type != "cpu" or x.layout != torch.strided or x.dim() != 2:
            return None
        cached = self._features
        if cached is None or cached[0] is not x or cached[1] != x._version:
            sparse = maybe_sparse(x)
            self._features = cached = (x, x._version, sparse if isinstance(sparse, SparseMatrix) else None)
        return cached[2]

    def __getstate__(self) -> dict:
        # the caches hold the graph and features of the last call: rebuilt on demand, never saved
        return {**super().__getstate__(), "_graph": None, "_features": None, "_mean": None}


def to_posterior(out: Tensor | tuple | Posterior, variational: bool) -> Posterior:
    """A posterior from what an encoder returned: a Posterior, ``(mu, logstd)``, ``[N, 2d]`` or ``[N, d]``."""
    if isinstance(out, Posterior):
        return out
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ConfigError(f"an encoder returned a tuple of {len(out)} tensors; expected (mu, logstd)")
        mu, logstd = out
        return Posterior(mu, logstd if variational else None)
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise ConfigError(f"an encoder must return a [num_nodes, d] tensor, got {type(out).__name__} "
                          f"{tuple(getattr(out, 'shape', ()))}")
    if not variational:
        return Posterior(out)
    if out.size(1) % 2:
        raise ConfigError(f"a variational model's encoder must return [num_nodes, 2 * latent] (mu, log sigma) or "
                          f"(mu, logstd); got {out.size(1)} columns")
    return Posterior.from_packed(out)
