"""Self-supervised graph auto-encoders with a cross-correlation decoder (Tan et al., *S2GAE: Self-Supervised
Graph Autoencoders Are Generalizable Learners with Graph Masking*, WSDM 2023,
https://doi.org/10.1145/3539597.3570404; the authors' code: https://github.com/qiaoyu-tan/S2GAE).

Each training step hides a share of the training graph's undirected edges, encodes the nodes with a GCN over
the visible edges only, keeping every layer's output h^(1), ..., h^(K), and asks a cross-correlation decoder
to tell the hidden edges from as many sampled non-edges. The decoder scores a pair (i, j) from all K^2
products of a layer of i with a layer of j:

    logit(i, j) = MLP( [h_i^(k) * h_j^(l)]_{k = 1..K, l = 1..K} )   (k-major concatenation, K^2 d inputs)

Scoring encodes the whole training graph, never a held-out edge.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.gcn import GCNLayer
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.models.maskgae import check_masking_batch, masked_edge_bce, visible_adjacency
from vgae_toolkit.ops.dropout import MaskDropout
from vgae_toolkit.ops.hadamard import cross_layer_mlp
from vgae_toolkit.ops.sparse import SparseMatrix


def mask_undirected_edges(pos: Tensor, ratio: float) -> tuple[Tensor, Tensor]:
    """S2GAE's undirected mask: exactly ``int(ratio * E)`` of the ``E`` undirected edges, drawn as a random
    permutation, are hidden. Returns ``(visible, masked)``: the visible edges in both orientations
    ``[2, 2(E - m)]`` (what the encoder sees) and the masked edges once each ``[2, m]`` (the positives).

    Args:
        pos (Tensor): the training edges, one orientation each ``[2, E]``.
        ratio (float): share of the edges to hide.
    """
    count = int(pos.size(1) * ratio)
    order = torch.randperm(pos.size(1), device=pos.device)
    masked, kept = pos[:, order[:count]], pos[:, order[count:]]
    return torch.cat([kept, kept.flip(0)], dim=1), masked


class LayerwiseGCNEncoder(nn.Module):
    """``layers`` GCN layers over Â that return every layer's output, as S2GAE's encoder
    (``GCN_mgaev3`` in its ``model.py``): for k < K, h^(k) = dropout(relu(Â h^(k-1) W_k + b_k)), and
    h^(K) = relu(Â h^(K-1) W_K + b_K). The features enter the first layer without dropout.

    Args:
        in_channels (int, optional): feature size; ``None``: featureless (X = I, a learnable first layer).
        num_nodes (int): nodes of the graph.
        hidden (int): width of every layer.
        layers (int): GCN layers K.
        dropout (float): dropout after every layer but the last.
        bias (bool): layer biases.
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int, layers: int, dropout: float,
                 bias: bool = True) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ConfigError("model.layers and model.hidden must be at least 1")
        widths = [num_nodes if in_channels is None else in_channels] + [hidden] * layers
        self.convs = nn.ModuleList(GCNLayer(a, b, bias) for a, b in zip(widths, widths[1:]))
        self.dropout = MaskDropout(dropout)  # nn.Dropout's distribution, a cheaper mask on the CPU

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> list[Tensor]:
        outputs, h = [], x
        for i, conv in enumerate(self.convs):
            h = conv(h, adj).relu_()  # [num_nodes, hidden]
            if i < len(self.convs) - 1:
                # the decoder reads the hidden layer after its dropout, as the authors' encoder hands it on
                h = self.dropout(h)
            outputs.append(h)
        return outputs


class CrossLayerDecoder(nn.Module):
    """S2GAE's cross-correlation decoder (``LPDecoder`` in its ``model.py``): an MLP on the K^2 products
    h_i^(k) * h_j^(l), concatenated with k (the layer of i) varying slowest. Linear, ReLU, dropout per
    hidden layer, then a linear output: one logit per pair. Not symmetric in i and j for K > 1. With one
    hidden layer (S2GAE's) it runs as one chunked node, :func:`~vgae_toolkit.ops.hadamard.cross_layer_mlp`.

    Args:
        latent (int): width d of every encoder layer.
        layers (int): encoder layers K.
        hidden (list[int]): hidden widths of the MLP (S2GAE: [256], its ``decode_layers=2``).
        dropout (float): dropout after every hidden layer (S2GAE: 0.5).
    """

    def __init__(self, *, latent: int, layers: int, hidden: list[int] | tuple[int, ...], dropout: float) -> None:
        super().__init__()
        widths = [layers * layers * latent, *hidden]
        if any(w < 1 for w in widths):
            raise ConfigError(f"model.decoder_hidden: widths must be positive, got {list(hidden)}")
        parts: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            parts += [nn.Linear(a, b), nn.ReLU(), MaskDropout(dropout)]
        parts.append(nn.Linear(widths[-1], 1))
        self.mlp = nn.Sequential(*parts)
        self.layers = layers

    def forward(self, hs: list[Tensor], pairs: Tensor) -> Tensor:
        if len(hs) != self.layers:
            raise ValueError(f"the decoder takes {self.layers} layers of codes, got {len(hs)}")
        stacked = torch.stack(hs, dim=1)  # [num_nodes, K, d]
        if len(self.mlp) == 4:  # one hidden layer: the same function in cache-sized chunks (ops.hadamard)
            first, drop, last = self.mlp[0], self.mlp[2], self.mlp[3]
            return cross_layer_mlp(stacked, pairs, first.weight, first.bias, last.weight, last.bias, drop.p,
                                   self.training)
        src, dst = stacked.index_select(0, pairs[0]), stacked.index_select(0, pairs[1])  # [P, K, d]
        cross = src.unsqueeze(2) * dst.unsqueeze(1)  # [P, K, K, d]: entry (k, l) is h_i^(k) * h_j^(l)
        return self.mlp(cross.flatten(1)).squeeze(-1)


class S2GAE(nn.Module):
    """S2GAE: hide part of the undirected edges, encode the visible graph layer by layer, decode the hidden
    edges from the cross-layer products.

    Args:
        in_channels, num_nodes: filled in from the data at run time.
        hidden (int): width of every encoder layer (S2GAE: 128).
        layers (int): GCN layers K of the encoder (S2GAE: 2).
        dropout (float): encoder dropout after every layer but the last (S2GAE: 0.5).
        bias (bool): encoder biases.
        mask_ratio (float): share of the undirected training edges hidden each step, in (0, 1) (S2GAE: 0.7).
        decoder_hidden (list[int]): hidden widths of the cross-correlation decoder (S2GAE: [256]).
        decoder_dropout (float): its dropout (S2GAE: 0.5, the same flag as the encoder's).
    """

    kind = "graph"
    negatives_per_positive = 1  # as many negatives as masked edges, and these are fewer than the E edges

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.5, bias: bool = True, mask_ratio: float = 0.7,
                 decoder_hidden: list[int] | tuple[int, ...] = (256,), decoder_dropout: float = 0.5) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ConfigError(f"model.mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = LayerwiseGCNEncoder(in_channels=in_channels, num_nodes=num_nodes, hidden=hidden,
                                           layers=layers, dropout=dropout, bias=bias)
        self.decoder = CrossLayerDecoder(latent=hidden, layers=layers, hidden=list(decoder_hidden),
                                         dropout=decoder_dropout)
        self.mask_ratio = float(mask_ratio)

    def describe(self) -> dict:
        return {"mask": "undirected", "mask_ratio": self.mask_ratio, "encoder_layers": len(self.encoder.convs),
                "encoder": type(self.encoder).__name__, "decoder": type(self.decoder).__name__}

    def layer_codes(self, batch, adj: SparseMatrix | None = None) -> list[Tensor]:
        """Every encoder layer's codes ``[num_nodes, hidden]`` from the training graph (or ``adj``)."""
        return self.encoder(batch.x, batch.adj if adj is None else adj)

    def encode(self, batch, adj: SparseMatrix | None = None) -> Posterior:
        """The node embeddings: all layers' codes side by side ``[num_nodes, K * hidden]``, a point mass."""
        return Posterior(torch.cat(self.layer_codes(batch, adj), dim=1))

    def loss(self, batch) -> dict[str, Tensor]:
        check_masking_batch(batch, "s2gae")
        visible, masked = mask_undirected_edges(batch.pos, self.mask_ratio)
        hs = self.layer_codes(batch, visible_adjacency(visible, batch.num_nodes))
        recon = masked_edge_bce(self.decoder, hs, masked, batch.neg, batch.neg_ordered)
        return {"loss": recon, "recon": recon}

    @torch.no_grad()
    def score(self, batch, pairs: Tensor) -> Tensor:
        """Logits of ``pairs`` from the layer codes of the whole training graph."""
        return self.decoder(self.layer_codes(batch), pairs)
