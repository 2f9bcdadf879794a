"""Masked graph auto-encoders (Li et al., *MaskGAE: Masked Graph Modeling Meets Graph Autoencoders*,
KDD 2023, https://arxiv.org/abs/2205.10053).

Each training step masks part of the training graph (random edges, or the edges of random walks:
:mod:`vgae_toolkit.ops.masking`), encodes the nodes on the visible edges only, and asks a Hadamard-MLP
edge decoder to tell the masked edges from as many sampled non-edges; a degree decoder regresses each
node's number of masked edges. Scoring encodes the whole training graph, never a held-out edge.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.decoders import HadamardMLPDecoder
from vgae_toolkit.models.encoders import ACTIVATIONS
from vgae_toolkit.models.gcn import GCNLayer
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.ops.dropout import MaskDropout
from vgae_toolkit.ops.masking import MASKS, SparseDropoutPlan, dropout_matmul, edge_csr
from vgae_toolkit.ops.sparse import SparseMatrix


def visible_adjacency(edge_index: Tensor, num_nodes: int) -> SparseMatrix:
    """Â = D^-1/2 (A + I) D^-1/2 of an unweighted graph without self-loops given in both directions,
    with one sort (the same matrix as :func:`vgae_toolkit.tasks.link.normalized_adjacency`)."""
    n = num_nodes
    loops = torch.arange(n, device=edge_index.device)
    row, col = torch.cat([edge_index[0], loops]), torch.cat([edge_index[1], loops])
    order = torch.argsort(row * n + col)
    row, col = row[order], col[order]
    degree = torch.bincount(row, minlength=n)
    scale = degree.to(torch.float32).rsqrt()
    crow = torch.zeros(n + 1, dtype=torch.long, device=row.device)
    crow[1:] = degree.cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR is in beta": only matmul is relied on
        warnings.simplefilter("ignore", UserWarning)
        return SparseMatrix(torch.sparse_csr_tensor(crow, col, scale[row] * scale[col], (n, n)))


class NormGCNEncoder(nn.Module):
    """``layers`` GCN layers over Â, each as MaskGAE's encoder has it: dropout, Â H W + b, batch norm,
    activation (the last layer too). Runs on the cached sparse products of the built-in GCN, and a
    sparse X stays sparse under dropout (:func:`~vgae_toolkit.ops.masking.dropout_matmul`).

    Args:
        in_channels (int, optional): feature size; ``None``: featureless (X = I).
        num_nodes (int): nodes of the graph.
        hidden (int): width of the layers before the last.
        latent (int): width of the last layer (the embedding).
        layers (int): GCN layers.
        dropout (float): dropout on the input of every layer (MaskGAE: 0.7, PubMed 0.2).
        batch_norm (bool): batch normalisation after every layer.
        activation (str): after every layer (MaskGAE: elu).
        bias (bool): layer biases.
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int, latent: int, layers: int,
                 dropout: float, batch_norm: bool, activation: str, bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS or activation == "prelu":
            raise ConfigError(f"model.activation={activation!r}: expected one of "
                              f"{sorted(set(ACTIVATIONS) - {'prelu'})}")
        if layers < 1 or hidden < 1 or latent < 1:
            raise ConfigError("model.layers, model.hidden and model.latent must be at least 1")
        widths = [num_nodes if in_channels is None else in_channels] + [hidden] * (layers - 1) + [latent]
        self.convs = nn.ModuleList(GCNLayer(a, b, bias) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) if batch_norm else nn.Identity() for b in widths[1:])
        self.dropout, self.activation = dropout, ACTIVATIONS[activation]
        self._plan: tuple | None = None  # (X, its SparseDropoutPlan): index arrays built once per feature matrix

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> Tensor:
        h = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if i == 0:
                h = adj @ dropout_matmul(h, conv.weight, self.dropout, self.training, self._dropout_plan(h))
            else:
                h = adj @ (F.dropout(h, self.dropout, self.training) @ conv.weight)
            if conv.bias is not None:
                h = h + conv.bias
            h = self.activation(norm(h))
        return h


    def _dropout_plan(self, x) -> SparseDropoutPlan | None:
        if not isinstance(x, SparseMatrix) or not (self.training and self.dropout > 0):
            return None
        if self._plan is None or self._plan[0] is not x:
            self._plan = (x, SparseDropoutPlan(x))
        return self._plan[1]

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_plan": None}  # rebuilt on demand, never saved


class DegreeDecoder(nn.Module):
    """An MLP from a node's code to its number of masked edges (MaskGAE's degree decoder: linear,
    dropout, ReLU per hidden layer, and a ReLU on the output, a count being non-negative)."""

    def __init__(self, latent: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        widths = [latent, *hidden, 1]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(a, b), MaskDropout(dropout), nn.ReLU()]
        layers += [nn.Linear(widths[-2], 1), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.mlp(z).squeeze(-1)


def check_masking_batch(batch, model: str) -> None:
    """What a masking model (``model=<model>``) needs of its training batch: one process (its masks are
    drawn per process), unweighted edges, and negatives."""
    if batch.part[1] > 1:
        raise ConfigError(f"model={model} trains in one process (its masks are drawn per process)")
    if batch.edge_weight is not None:
        raise ConfigError(f"model={model} masks unweighted edges; the graph has edge weights (drop them)")
    if batch.neg is None:
        raise ValueError(f"model={model} needs negatives in the batch")


def masked_edge_bce(decoder, codes, masked: Tensor, neg: Tensor, neg_ordered: bool) -> Tensor:
    """The masked auto-encoders' loss: mean BCE of the masked edges (label 1) plus mean BCE of as many of the
    batch's negatives (label 0, a uniform subset of them), all scored by ``decoder(codes, pairs)`` in one pass.

    Args:
        masked (Tensor): the masked edges ``[2, M]``.
        neg (Tensor): the batch's negatives ``[2, Q]``, ``Q >= M`` (the first ``M`` are a uniform subset
            unless ``neg_ordered``, whose order is by first node: then ``M`` drawn at random).
    """
    if neg.size(1) > masked.size(1):  # as many negatives as masked edges, a uniform subset
        neg = neg[:, torch.randperm(neg.size(1), device=neg.device)[: masked.size(1)]] if neg_ordered \
            else neg[:, : masked.size(1)]
    logits = decoder(codes, torch.cat([masked, neg], dim=1))  # one pass over both
    pos_logits, neg_logits = logits[: masked.size(1)], logits[masked.size(1):]
    # binary cross-entropy: -log sigma(l) = softplus(-l) on the masked edges, softplus(l) on negatives
    return F.softplus(-pos_logits).mean() + F.softplus(neg_logits).mean()


class MaskGAE(nn.Module):
    """MaskGAE: mask, encode the visible graph, decode the masked edges (and the degrees).

    Args:
        in_channels, num_nodes: filled in from the data at run time.
        hidden (int): width of the encoder's layers before the last (MaskGAE: 128).
        latent (int): embedding size, the encoder's last layer (MaskGAE: 128).
        layers (int): GCN layers of the encoder (MaskGAE's link prediction: 1).
        dropout (float): encoder dropout, on every layer's input (MaskGAE: 0.7; PubMed 0.2).
        batch_norm (bool): batch normalisation in the encoder (MaskGAE's link prediction: on).
        activation (str): encoder activation (MaskGAE: elu).
        bias (bool): encoder biases.
        mask (str): ``path`` (random-walk paths) or ``edge`` (independent edges); ``none``: no
            masking, the plain auto-encoder with the same decoders.
        mask_ratio (float): ``edge``: probability that a directed edge is masked; ``path``: share of
            nodes that start a walk (MaskGAE: 0.7).
        walk_length, walks_per_node (int): the walks of ``path`` masking (MaskGAE: 2, the encoder's
            layers + 1, and 1).
        walk_start (str): ``path`` masking's walks start at the first node of each directed edge
            drawn with probability ``mask_ratio`` (``edge``, MaskGAE's code) or at ``mask_ratio x N``
            distinct nodes (``node``, an earlier version of its code).
        decoder_hidden (list[int]): hidden widths of the Hadamard-MLP edge decoder and of the degree
            decoder (MaskGAE: [32]).
        decoder_dropout (float): their dropout (MaskGAE: 0.3).
        degree_weight (float): weight of the degree decoder's squared error (MaskGAE: 0.002);
            ``0`` drops the degree decoder.
    """

    kind = "graph"
    negatives_per_positive = 2  # the masked edges are at most all 2E directed training edges

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 128, latent: int = 128,
                 layers: int = 1, dropout: float = 0.7, batch_norm: bool = True, activation: str = "elu",
                 bias: bool = True, mask: str = "path", mask_ratio: float = 0.7, walk_length: int = 2,
                 walks_per_node: int = 1, walk_start: str = "edge", decoder_hidden: list[int] | tuple[int, ...] = (32,),
                 decoder_dropout: float = 0.3, degree_weight: float = 2e-3) -> None:
        super().__init__()
        if mask not in (*MASKS, "none"):
            raise ConfigError(f"model.mask={mask!r}: expected one of {sorted(MASKS)} or 'none'")
        if walk_start not in ("edge", "node"):
            raise ConfigError(f"model.walk_start={walk_start!r}: expected 'edge' or 'node'")
        if not 0 <= mask_ratio <= 1:
            raise ConfigError(f"model.mask_ratio must be in [0, 1], got {mask_ratio}")
        self.encoder = NormGCNEncoder(in_channels=in_channels, num_nodes=num_nodes, hidden=hidden, latent=latent,
                                      layers=layers, dropout=dropout, batch_norm=batch_norm,
                                      activation=activation, bias=bias)
        self.decoder = HadamardMLPDecoder(latent=latent, hidden=list(decoder_hidden), dropout=decoder_dropout,
                                          dropout_last=False)
        self.degree_decoder = DegreeDecoder(latent, list(decoder_hidden), decoder_dropout) if degree_weight else None
        self.mask, self.mask_ratio, self.degree_weight = mask, float(mask_ratio), float(degree_weight)
        self.walk_length, self.walks_per_node, self.walk_start = walk_length, walks_per_node, walk_start
        self._csr: tuple | None = None  # (training edges, their edge_csr): sorted once per graph

    def describe(self) -> dict:
        return {"mask": self.mask, "mask_ratio": self.mask_ratio, "degree_weight": self.degree_weight,
                "encoder": type(self.encoder).__name__, "decoder": type(self.decoder).__name__}

    def split_edges(self, edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
        """This step's ``(visible, masked)`` edges of the training graph ``[2, 2E]``."""
        if self.mask == "none":
            return edge_index, edge_index
        if self.mask == "path":
            if self._csr is None or self._csr[0] is not edge_index:
                self._csr = (edge_index, edge_csr(edge_index, num_nodes))
            return MASKS["path"](edge_index, self.mask_ratio, num_nodes, self.walk_length, self.walks_per_node,
                                 self.walk_start, csr=self._csr[1])
        return MASKS["edge"](edge_index, self.mask_ratio, num_nodes)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_csr": None}  # rebuilt on demand, never saved

    def encode(self, batch, adj: SparseMatrix | None = None) -> Posterior:
        """Codes of every node from the training graph (or ``adj``): a point-mass posterior."""
        return Posterior(self.encoder(batch.x, batch.adj if adj is None else adj))

    def loss(self, batch) -> dict[str, Tensor]:
        check_masking_batch(batch, "maskgae")
        n = batch.num_nodes
        visible, masked = self.split_edges(batch.edge_index, n)
        z = self.encode(batch, visible_adjacency(visible, n)).mu
        recon = masked_edge_bce(self.decoder, z, masked, batch.neg, batch.neg_ordered)
        out = {"loss": recon, "recon": recon}
        if self.degree_decoder is not None:
            degree = torch.bincount(masked[1], minlength=n).to(z.dtype)
            degree_loss = F.mse_loss(self.degree_decoder(z), degree)
            out.update(loss=recon + self.degree_weight * degree_loss, degree=degree_loss)
        return out

    @torch.no_grad()
    def score(self, batch, pairs: Tensor) -> Tensor:
        """Logits of ``pairs`` from the codes of the whole training graph."""
        return self.decoder(self.encode(batch).mu, pairs)
