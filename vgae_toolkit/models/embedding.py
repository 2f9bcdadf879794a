"""Table 1's baselines as models: a node embedding fitted once, links scored by inner products.

Kipf & Welling (https://arxiv.org/abs/1611.07308) compare GAE/VGAE with spectral clustering (SC)
and DeepWalk (DW), both 128-dimensional, scoring a pair (i, j) by z_i . z_j. Here both are
``nn.Module`` s with the auto-encoders' interface, ``score(batch, pairs)``, so the link task
evaluates them on exactly the split and the val/test negatives the auto-encoders see. They are
fitted in closed form by :class:`vgae_toolkit.closed_form.ClosedFormFit` (``trainer=closed_form``, which
their configs select), not by gradient steps: ``fit(batch)`` reads the training edges only.
The embeddings themselves are computed in :mod:`vgae_toolkit.models.baselines`.
"""
from __future__ import annotations

import logging
import time

import torch
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.baselines import SOLVERS, deepwalk_embedding, inner_product_scores, spectral_embedding
from vgae_toolkit.models.graph import GraphBatch
from vgae_toolkit.models.latent import Posterior


class NodeEmbedding(nn.Module):
    """A fitted ``[num_nodes, dim]`` embedding whose inner products score links.

    Subclasses implement :meth:`embed` on the training graph. Node features are never used
    (``in_channels`` is accepted, as every graph model's, and ignored by design: SC and DW
    see the graph only).

    Args:
        in_channels (int, optional): feature size, filled in at run time; unused.
        num_nodes (int): nodes of the graph, filled in at run time.
        dim (int): embedding size (paper: 128).
        seed (int): seeds the embedding's own randomness.
    """

    kind = "graph"
    negatives_per_positive = 0  # fitted on the training edges alone: no sampled negatives

    def __init__(self, *, in_channels: int | None, num_nodes: int, dim: int = 128, seed: int = 0) -> None:
        super().__init__()
        if dim < 1:
            raise ConfigError(f"model.dim must be positive, got {dim}")
        self.num_nodes, self.dim, self.seed = num_nodes, dim, seed
        self.register_buffer("embedding", torch.zeros(num_nodes, dim))  # [num_nodes, dim]
        self.register_buffer("fitted", torch.tensor(False))  # a buffer: a loaded checkpoint scores too
        self.fit_seconds = 0.0

    def embed(self, edge_index: Tensor) -> Tensor:
        raise NotImplementedError

    def fit(self, batch: GraphBatch) -> None:
        """Embed the training graph of ``batch`` (its positive pairs, both directions)."""
        start = time.perf_counter()
        edge_index = torch.cat([batch.pos, batch.pos.flip(0)], dim=1)  # [2, 2 * train edges]
        self.embedding.copy_(self.embed(edge_index))
        self.fitted.fill_(True)
        self.fit_seconds = time.perf_counter() - start

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        raise ConfigError(f"{type(self).__name__} is fitted in closed form, not by gradient steps: "
                          "use trainer=closed_form (the model's config selects it unless trainer= is given)")

    def encode(self, batch: GraphBatch) -> Posterior:
        """The fitted embedding as a point-mass posterior (as a GAE's), ``mu`` ``[num_nodes, dim]``."""
        if not bool(self.fitted):
            raise RuntimeError(f"{type(self).__name__} used before fit")
        return Posterior(self.embedding)

    @torch.no_grad()
    def score(self, batch: GraphBatch, pairs: Tensor) -> Tensor:
        """Logits z_i . z_j of ``pairs`` ``[2, P]``: ``[P]``."""
        return inner_product_scores(self.encode(batch).mu, pairs)

    def describe(self) -> dict:
        return {"embedding_dim": self.dim, "fit_seconds": self.fit_seconds}


class SpectralEmbedding(NodeEmbedding):
    """SC: eigenvectors of the regularised normalised adjacency of the training graph.

    Args:
        regularization (float): tau as a fraction of the mean degree, see
            :func:`~vgae_toolkit.models.baselines.spectral_embedding`. (default: :obj:`0.03`)
        solver (str): ``auto``, ``dense`` (exact) or ``block`` (LOBPCG, for large graphs), see
            :func:`~vgae_toolkit.models.baselines.spectral_embedding`. (default: :obj:`auto`)
        **kwargs: ``in_channels``, ``num_nodes``, ``dim``, ``seed`` of :class:`NodeEmbedding`.
    """

    def __init__(self, *, regularization: float = 0.03, solver: str = "auto", **kwargs) -> None:
        super().__init__(**kwargs)
        if regularization < 0:
            raise ConfigError(f"model.regularization must be non-negative, got {regularization}")
        if solver not in SOLVERS:
            raise ConfigError(f"model.solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        self.regularization, self.solver = regularization, solver

    def embed(self, edge_index: Tensor) -> Tensor:
        return spectral_embedding(edge_index, self.num_nodes, dim=self.dim,
                                  regularization=self.regularization, seed=self.seed, solver=self.solver)

    def describe(self) -> dict:
        return {**super().describe(), "regularization": self.regularization, "solver": self.solver}


class DeepWalk(NodeEmbedding):
    """DW: skip-gram with negative sampling over uniform random walks on the training graph.

    Args:
        walks_per_node (int): walks started from every node (paper: 10).
        walk_length (int): nodes per walk (paper: 80).
        window (int): skip-gram context size (paper: 10).
        negative (int): negatives per context pair; ``0`` = hierarchical softmax.
        epochs (int): passes of the skip-gram over the walks.
        workers (int): skip-gram threads; only ``1`` is bit-for-bit reproducible.
        **kwargs: ``in_channels``, ``num_nodes``, ``dim``, ``seed`` of :class:`NodeEmbedding`.
    """

    def __init__(self, *, walks_per_node: int = 10, walk_length: int = 80, window: int = 10, negative: int = 5,
                 epochs: int = 1, workers: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if min(walks_per_node, walk_length, window, epochs, workers) < 1 or negative < 0:
            raise ConfigError("model.walks_per_node, walk_length, window, epochs and workers must be positive, "
                              f"negative non-negative; got {walks_per_node}, {walk_length}, {window}, {epochs}, "
                              f"{workers}, {negative}")
        self.walks_per_node, self.walk_length, self.window = walks_per_node, walk_length, window
        self.negative, self.epochs, self.workers = negative, epochs, workers

    def embed(self, edge_index: Tensor) -> Tensor:
        gensim_log = logging.getLogger("gensim")  # it logs its progress every second at INFO
        level = gensim_log.level
        gensim_log.setLevel(max(level, logging.WARNING))
        try:
            return self._embed(edge_index)
        finally:
            gensim_log.setLevel(level)

    def _embed(self, edge_index: Tensor) -> Tensor:
        return deepwalk_embedding(edge_index, self.num_nodes, dim=self.dim, walks_per_node=self.walks_per_node,
                                  walk_length=self.walk_length, window=self.window, negative=self.negative,
                                  epochs=self.epochs, seed=self.seed, workers=self.workers)
