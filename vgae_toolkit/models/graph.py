"""Graph auto-encoders for link prediction: encoder x decoder x regulariser x reconstruction loss.

Kipf & Welling, *Variational Graph Auto-Encoders* (https://arxiv.org/abs/1611.07308):
an encoder q(Z|X, A) (by default a two-layer GCN over Â = D^-1/2 (A + I) D^-1/2,
:mod:`vgae_toolkit.models.gcn`) and an inner-product decoder p(A_ij = 1 | z_i, z_j) = sigma(z_i·z_j).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.decoders import InnerProductDecoder, make_decoder
from vgae_toolkit.models.encoders import MessagePassingEncoder, accepts_edge_weight, to_posterior
from vgae_toolkit.models.gcn import GCNEncoder, GCNLayer, LinearEncoder  # noqa: F401 (GCNLayer: public here too)
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.models.regularisers import AdversarialRegulariser
from vgae_toolkit.ops.dense import weighted_gram_bce_sum
from vgae_toolkit.ops.pairs import cached_plan, inner_product, sampled_bce, share_of, sorted_pairs
from vgae_toolkit.ops.sparse import SparseMatrix


@dataclass
class GraphBatch:
    """One full-graph training or evaluation batch.

    Attributes:
        x: node features ``[N, F]`` (dense, or sparse with a cached transpose), or ``None``
            for featureless (GAE*/VGAE*) runs.
        adj: the normalised training adjacency Â ``[N, N]`` (symmetric, cached CSR).
        pos: positive pairs ``[2, P]`` (training edges, one orientation each).
        neg: sampled negative pairs ``[2, Q]``, or ``None`` (the dense loss needs none).
        neg_ordered: the negatives are ordered by first node (:class:`~vgae_toolkit.splits.NegativeSampler`
            on large graphs): their gradient is then partly a sparse product instead of a scatter.
        part: ``(rank, world_size)``: with several processes each computes its share of the loss
            terms (pairs, rows of the Gram matrix), scaled so that the mean over processes is the
            loss of the whole batch; ``(0, 1)`` is the whole loss.
        cache: what the model derives once from the constant parts (``x``, ``adj``, ``pos``), such
            as the gradient plan of the positive pairs; batches of one run share it.
        edge_index: the training edges in both directions ``[2, 2E]``, for message-passing encoders.
        edge_weight: their weights ``[2E]`` on a weighted graph, else ``None``.
        features: the node features as a dense ``[N, F]`` tensor (what message-passing layers take),
            or ``None`` for featureless runs.
    """

    x: Tensor | SparseMatrix | None
    adj: SparseMatrix
    pos: Tensor
    neg: Tensor | None = None
    part: tuple[int, int] = (0, 1)
    neg_ordered: bool = False
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    edge_index: Tensor | None = None
    edge_weight: Tensor | None = None
    features: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.adj.size(0)

    def to(self, device: torch.device | str) -> GraphBatch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return GraphBatch(x=move(self.x), adj=self.adj.to(device), pos=self.pos.to(device), neg=move(self.neg),
                          part=self.part, neg_ordered=self.neg_ordered,  # a fresh cache: plans live on one device
                          edge_index=move(self.edge_index), edge_weight=move(self.edge_weight),
                          features=move(self.features))

    def with_negatives(self, neg: Tensor | None, part: tuple[int, int], ordered: bool = False) -> GraphBatch:
        """This epoch's batch: the same graph and cache with fresh negatives."""
        return replace(self, neg=neg, part=part, neg_ordered=ordered)


# Named presets of message-passing encoders: conf/model/encoder/<name>.yaml sets their options.
CONVOLUTIONS = {"gat": "GATConv", "sage": "SAGEConv", "gin": "GINConv", "graphconv": "GraphConv",
                "gcnconv": "GCNConv"}


def make_encoder(spec: str | dict | nn.Module, *, in_channels: int | None, num_nodes: int, hidden: int,
                 latent: int, variational: bool, dropout: float, bias: bool, noise: float = 0.0) -> nn.Module:
    """The encoder ``spec`` names: ``gcn``, ``linear``, a message-passing preset or ``{"conv": ...}``.

    A module is used as it is (``forward(x, edge_index[, edge_weight])``, see
    :mod:`vgae_toolkit.models.encoders`).
    """
    if isinstance(spec, nn.Module):
        return spec
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", None) or ("custom" if "conv" in options else "gcn")
    if noise and name != "gcn":
        raise ConfigError(f"model.noise={noise} perturbs the hidden layer of the built-in gcn encoder; "
                          f"model.encoder={name} has no such knob (set model.noise=0)")
    if name == "gcn":
        _no_options(name, options)
        return GCNEncoder(in_channels=in_channels, num_nodes=num_nodes, hidden=hidden, latent=latent,
                          variational=variational, dropout=dropout, bias=bias, noise=noise)
    if name == "linear":
        _no_options(name, options)
        return LinearEncoder(in_channels=in_channels, num_nodes=num_nodes, latent=latent, variational=variational,
                             bias=bias)
    if name not in CONVOLUTIONS and "conv" not in options:
        raise ConfigError(f"model.encoder.name={name!r}: expected gcn, linear, one of {sorted(CONVOLUTIONS)}, "
                          f"or a conv= torch_geometric.nn class name")
    options.setdefault("conv", CONVOLUTIONS.get(name))
    return MessagePassingEncoder(in_channels=in_channels, num_nodes=num_nodes, hidden=hidden, latent=latent,
                                 variational=variational, dropout=dropout, **options)


def _no_options(name: str, options: dict) -> None:
    if options:
        raise ConfigError(f"model.encoder={name} takes its settings from model.hidden, model.latent, model.dropout "
                          f"and model.bias; got encoder options {sorted(options)}")


class GraphAutoEncoder(nn.Module):
    """A graph auto-encoder: encoder x decoder x regulariser x reconstruction loss.

    GAE (``variational=False``) and VGAE (Kipf & Welling 2016) by default: the two-layer GCN encoder and
    the inner-product decoder, which run on fused kernels (:mod:`vgae_toolkit.ops`). Other encoders
    (:func:`make_encoder`), decoders (:mod:`~vgae_toolkit.models.decoders`) and the adversarial
    regulariser (:mod:`~vgae_toolkit.models.regularisers`) compose with the same losses.

    Args:
        in_channels, num_nodes: filled in from the data at run time.
        hidden, latent, variational, dropout, bias: see :class:`GCNEncoder` (other encoders take
            ``hidden``, ``latent`` and ``dropout`` too).
        encoder (str, dict or nn.Module): ``gcn`` (default), ``linear``, a message-passing preset
            (``gat``, ``sage``, ``gin``, ``graphconv``) or its options as a dict, or a module.
        decoder (str or dict): ``inner_product`` (default) or ``hadamard_mlp`` (a dict adds options).
        regulariser (dict, optional): ``{"name": "adversarial", ...}`` for ARGA/ARGVA; ``None`` or
            ``{"name": "none"}`` for none besides the KL of a variational model.
        recon (str): ``dense`` — the paper's weighted BCE over all N^2 pairs with
            ``pos_weight`` and ``norm`` (reference code, ``optimizer.py``), O(N^2) time but
            O(block x N) memory (:func:`~vgae_toolkit.ops.dense.weighted_gram_bce_sum`);
            ``sampled`` — BCE on the training edges and ``neg_ratio`` uniform negatives per edge,
            O(E) per epoch (:func:`~vgae_toolkit.ops.pairs.sampled_bce`); ``auto`` — ``dense`` up
            to ``dense_max_nodes`` nodes, ``sampled`` above (the resolved choice is ``self.recon``).
        neg_ratio (int): sampled negatives per positive edge (``recon=sampled``).
        dense_self_loops (bool): the dense loss's labels are A_train + I (``True``): the paper's A,
            whose diagonal is set to 1, and the reference code's ``adj_label``; ``False`` labels the
            links alone, without the N self-pairs, as the sampled loss does (PyG's example).
            ``pos_weight`` and ``norm`` count the edges of A_train either way.
        kl_weight (float, optional): weight of the node-averaged KL; ``None`` = 1/N, the
            reference code's factor (it divides the mean KL by N once more).
        dense_max_nodes (int): largest graph for which ``recon=auto`` picks ``dense`` (an explicit
            ``recon=dense`` runs at any size).
        noise (float): std of Gaussian noise on the GCN encoder's hidden layer in training (ARGA's
            reference code: 0.1); see :class:`GCNEncoder`. (default: ``0.0``)
    """

    kind = "graph"

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 32, latent: int = 16,
                 variational: bool = True, dropout: float = 0.0, bias: bool = True, recon: str = "auto",
                 neg_ratio: int = 1, kl_weight: float | None = None, dense_max_nodes: int = 10_000,
                 dense_self_loops: bool = True, encoder: str | dict | nn.Module = "gcn",
                 decoder: str | dict = "inner_product", regulariser: dict | None = None, noise: float = 0.0) -> None:
        super().__init__()
        self.encoder = make_encoder(encoder, in_channels=in_channels, num_nodes=num_nodes, hidden=hidden,
                                    latent=latent, variational=variational, dropout=dropout, bias=bias, noise=noise)
        self.builtin = isinstance(self.encoder, (GCNEncoder, LinearEncoder))  # takes the cached Â
        self.variational = variational
        options = {"name": decoder} if isinstance(decoder, str) else dict(decoder)
        self.decoder = make_decoder(options.pop("name", "inner_product"), latent, **options)
        self.fused = isinstance(self.decoder, InnerProductDecoder)  # the inner product's fast kernels apply
        options = dict(regulariser or {"name": "none"})
        name = options.pop("name", "none")
        if name not in ("none", "adversarial"):
            raise ConfigError(f"model.regulariser.name={name!r}: expected 'none' or 'adversarial'")
        self.regulariser = AdversarialRegulariser(latent=latent, **options) if name == "adversarial" else None
        if recon not in ("auto", "sampled", "dense"):
            raise ConfigError(f"model.recon: expected 'auto', 'sampled' or 'dense', got {recon!r}")
        if recon == "auto":
            recon = "dense" if num_nodes <= dense_max_nodes and self.fused else "sampled"
        if recon == "dense" and not self.fused:
            raise ConfigError("model.recon=dense scores all N^2 pairs and needs the inner-product decoder; "
                              "use model.recon=sampled (or auto) with this decoder")
        if recon == "sampled" and neg_ratio < 1:
            raise ConfigError(f"model.neg_ratio must be at least 1 with recon=sampled, got {neg_ratio}")
        self.recon, self.neg_ratio, self.dense_self_loops = recon, neg_ratio, bool(dense_self_loops)
        self.kl_weight = 1.0 / num_nodes if kl_weight is None else float(kl_weight)

    def describe(self) -> dict:
        """The resolved loss settings and parts, for ``metrics.json``."""
        return {"recon": self.recon, "kl_weight": self.kl_weight,
                "neg_ratio": self.neg_ratio if self.recon == "sampled" else None,
                "dense_self_loops": self.dense_self_loops if self.recon == "dense" else None,
                "encoder": type(self.encoder).__name__, "decoder": type(self.decoder).__name__,
                "regulariser": None if self.regulariser is None else type(self.regulariser).__name__}

    @property
    def negatives_per_positive(self) -> int:
        """How many negatives per edge the training batches must carry (0: none needed)."""
        return self.neg_ratio if self.recon == "sampled" else 0

    def encode(self, batch: GraphBatch) -> Posterior:
        if self.builtin:
            return self.encoder(batch.x, batch.adj)
        if batch.edge_index is None:
            raise ConfigError("a message-passing encoder needs the batch's edge_index (the task provides it)")
        if batch.edge_weight is None:
            return to_posterior(self.encoder(batch.features, batch.edge_index), self.variational)
        if not getattr(self.encoder, "weighted", accepts_edge_weight(self.encoder)):
            raise ConfigError(f"the graph has edge weights, but the encoder {type(self.encoder).__name__} takes no "
                              f"edge_weight argument; use model/encoder=gcn (weighted Â) or drop the weights")
        return to_posterior(self.encoder(batch.features, batch.edge_index, batch.edge_weight), self.variational)

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        posterior = self.encode(batch)
        z, kl = posterior.rsample_and_mean_kl()  # z: [num_nodes, latent]; kl: mean over nodes
        if self.recon == "dense":
            recon = self._dense_recon(z, batch.pos, batch.part, batch.cache, self.dense_self_loops)
        elif self.fused:
            recon = self._sampled_recon(z, batch)
        else:
            recon = self._decoded_recon(z, batch)
        loss = recon if posterior.deterministic else recon + self.kl_weight * kl  # a GAE's KL is 0
        out = {"loss": loss, "recon": recon, "kl": kl}
        if self.regulariser is not None:  # ARGA/ARGVA: fool the adversary
            adversarial = self.regulariser(z)
            out.update(loss=out["loss"] + adversarial["loss"], adv=adversarial["loss"], disc=adversarial["disc"])
        return out

    def _decoded_recon(self, z: Tensor, batch: GraphBatch) -> Tensor:
        """The sampled loss through any decoder: mean BCE of the edges plus mean BCE of the negatives."""
        if batch.neg is None:
            raise ValueError("recon=sampled needs negatives in the batch")
        part = batch.part
        pos, neg = self.decoder(z, share_of(batch.pos, part)), self.decoder(z, share_of(batch.neg, part))
        # -log sigma(l) = softplus(-l), -log(1 - sigma(l)) = softplus(l); shares scaled as in sampled_bce
        return part[1] * (F.softplus(-pos).sum() / batch.pos.size(1) + F.softplus(neg).sum() / batch.neg.size(1))

    def _sampled_recon(self, z: Tensor, batch: GraphBatch) -> Tensor:
        if batch.neg is None:
            raise ValueError("recon=sampled needs negatives in the batch")
        part = batch.part
        plan = cached_plan(batch.cache, ("pos", part), batch.pos,
                           lambda: sorted_pairs(share_of(batch.pos, part), z.size(0)), z.size(0))
        # mean over all pairs of -log sigma(l) (edges) and -log(1 - sigma(l)) (negatives); with several
        # processes, this process's sums scaled so that the mean over processes is that mean
        return sampled_bce(z, plan, share_of(batch.neg, part),  # (a share of ordered pairs is ordered)
                           part[1] / batch.pos.size(1), part[1] / batch.neg.size(1), batch.neg_ordered)

    @staticmethod
    def _dense_recon(z: Tensor, pos: Tensor, part: tuple[int, int] = (0, 1), cache: dict | None = None,
                     self_loops: bool = True) -> Tensor:
        # Paper and reference code: labels A_train + I over all N^2 pairs (self_loops=False: A_train,
        # no self-pair labelled); pos_weight and norm use the edge count of A_train without the
        # self-loops.
        n = z.size(0)
        num_ones = 2 * pos.size(1)
        pos_weight = (n * n - num_ones) / num_ones
        norm = n * n / (2.0 * (n * n - num_ones))
        total = weighted_gram_bce_sum(z, pos, pos_weight, part, cache, self_loops)
        if part[1] > 1:  # this process's share of the sum: the mean over processes is the whole loss
            total = total * part[1]
        return norm * total / (n * n)

    @torch.no_grad()
    def score(self, batch: GraphBatch, pairs: Tensor) -> Tensor:
        """Logits of the given pairs from the posterior means (as the reference evaluation)."""
        mu = self.encode(batch).mu
        return inner_product(mu, pairs) if self.fused else self.decoder(mu, pairs)
