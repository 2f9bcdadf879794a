"""Unsupervised link prediction on one graph (the VGAE paper's Table 1 protocol)."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.graph_input import prepare_graph
from vgae_toolkit.metrics import HITS_AT, cluster_scores, link_scores, linear_probe, ranking_scores
from vgae_toolkit.models.graph import GraphBatch
from vgae_toolkit.ops.sparse import SparseMatrix, maybe_sparse
from vgae_toolkit.splits import LinkSplit, NegativeSampler, split_edges


def normalized_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> SparseMatrix:
    """Â = D^-1/2 (A + I) D^-1/2 as a cached, symmetric CSR matrix, computed once per run.

    With ``edge_weight``, A holds the weights and D their sums (self-loops of weight 1), as
    ``torch_geometric.nn.GCNConv`` normalises a weighted graph.
    """
    edge_index, weight = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=True)
    order = torch.argsort(edge_index[0] * num_nodes + edge_index[1])
    row, col, weight = edge_index[0][order], edge_index[1][order], weight[order]
    crow = torch.zeros(num_nodes + 1, dtype=torch.long)
    crow[1:] = torch.bincount(row, minlength=num_nodes).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR is in beta": we rely only on matmul
        warnings.simplefilter("ignore", UserWarning)
        return SparseMatrix(torch.sparse_csr_tensor(crow, col, weight, (num_nodes, num_nodes)))


def training_weights(data: Data, edge_index: Tensor) -> Tensor | None:
    """The weights of the graph's edges at ``edge_index`` (``None`` for an unweighted graph)."""
    weight = getattr(data, "edge_weight", None)
    if weight is None:
        return None
    n = data.num_nodes
    keys = data.edge_index[0] * n + data.edge_index[1]
    order = torch.argsort(keys)
    wanted = edge_index[0] * n + edge_index[1]
    at = torch.searchsorted(keys[order], wanted).clamp_(max=keys.numel() - 1)
    if not bool((keys[order][at] == wanted).all()):
        raise DataError("the training edges must be edges of the graph to take their weights")
    return weight[order][at]


class TrainEpochs:
    """Yields one full-graph batch per epoch, with fresh negatives when the loss needs them.

    Negatives are drawn on the CPU (the same pairs whatever the device, and in every process) and
    moved to the batch's device; ``part`` marks the share of the loss this process computes.
    """

    def __init__(self, batch: GraphBatch, sampler: NegativeSampler, negatives_per_positive: int,
                 part: tuple[int, int] = (0, 1)) -> None:
        self.batch, self.sampler, self.ratio, self.part = batch, sampler, negatives_per_positive, part

    def __len__(self) -> int:
        return 1

    def state_dict(self) -> dict:
        """The negative sampler's stream: an interrupted run resumes with the same negatives."""
        return {"sampler_generator": self.sampler.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.generator.set_state(state["sampler_generator"])

    def __iter__(self) -> Iterator[GraphBatch]:
        neg = self.sampler(self.ratio * self.batch.pos.size(1)).to(self.batch.pos.device) if self.ratio else None
        yield self.batch.with_negatives(neg, self.part, ordered=self.sampler.ordered)


class LinkPredictionTask:
    """Split a graph, feed the encoder the training edges only, score held-out pairs.

    A user's graph is checked first (:func:`~vgae_toolkit.graph_input.prepare_graph`): directed edges
    are symmetrised and duplicates and self-loops dropped, each change logged with its count.

    Args:
        data (Data): a graph, e.g. from :mod:`vgae_toolkit.data.graphs`; ``edge_weight`` (optional)
            weights Â and is handed to message-passing encoders.
        features (bool): use node features; ``False`` gives the paper's GAE*/VGAE*.
        normalize_features (bool): row-normalise features (PyG's example does; the paper's code does not).
        val_frac, test_frac (float): held-out edge fractions (paper: 0.05, 0.10).
        split_seed (int): seeds the split and fixed negatives (same for every model).
        sampler_seed (int): seeds the per-epoch training negatives.
        split (LinkSplit, optional): a split made elsewhere, used as given (``data`` then holds the
            training graph); the fractions and ``split_seed`` are unused.
        test_graph (str): the graph the encoder sees when the test pairs are scored: ``train`` (the
            training edges, as at every other stage: our protocol) or ``train_val`` (training and
            validation edges, as MaskGAE's code scores its test split; a protocol option for
            comparing with published numbers, never the default).
    """

    def __init__(self, data: Data, *, features: bool = True, normalize_features: bool = False,
                 val_frac: float = 0.05, test_frac: float = 0.10, split_seed: int = 0, sampler_seed: int = 0,
                 split: LinkSplit | None = None, test_graph: str = "train") -> None:
        if test_graph not in ("train", "train_val"):
            raise ConfigError(f"split.test_graph={test_graph!r}: expected 'train' or 'train_val'")
        self.test_graph = test_graph
        self._test_batch: GraphBatch | None = None
        self.data = data = prepare_graph(data)
        self.split: LinkSplit = split if split is not None else split_edges(
            data.edge_index, data.num_nodes, val_frac=val_frac, test_frac=test_frac, seed=split_seed)
        x = data.x if features else None
        if x is not None and normalize_features:
            if bool((x < 0).any()):
                raise ConfigError("dataset.normalize_features=true divides each row by its sum, which needs "
                                  "non-negative features (e.g. word counts); these have negative values")
            x = x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)
        self.x = x
        edge_index = self.split.train_edge_index  # [2, 2E]: what the encoder sees, at every stage
        weight = training_weights(data, edge_index)
        adj = normalized_adjacency(edge_index, data.num_nodes, weight)
        # bag-of-words features (Cora: 1.3% non-zero) are multiplied as a cached sparse matrix
        self.batch = GraphBatch(x=None if x is None else maybe_sparse(x), adj=adj, pos=self.split.train_pos,
                                edge_index=edge_index, edge_weight=weight, features=x)
        self.sampler = NegativeSampler(self.split.train_pos, data.num_nodes,
                                       torch.Generator().manual_seed(sampler_seed))

    primary_metric = "val_ap"  # what trainer.monitor=auto maximises

    def model_kwargs(self) -> dict:
        return {"in_channels": None if self.x is None else self.x.size(1), "num_nodes": self.data.num_nodes}

    def to(self, device: torch.device | str) -> LinkPredictionTask:
        """Moves the training graph and the held-out pairs to ``device``."""
        self.batch, self.split, self._test_batch = self.batch.to(device), self.split.to(device), None
        return self

    def graph_for(self, split: str) -> GraphBatch:
        """The graph the encoder sees when ``split``'s pairs are scored (see ``test_graph``)."""
        if split != "test" or self.test_graph == "train":
            return self.batch
        if self._test_batch is None:  # training and validation edges, both directions
            val = self.split.val_pos.to(self.batch.pos.device)
            pos = torch.cat([self.batch.pos, val], dim=1)
            edge_index = torch.cat([pos, pos.flip(0)], dim=1)
            weight = training_weights(self.data, edge_index.cpu())
            adj = normalized_adjacency(edge_index.cpu(), self.data.num_nodes, weight).to(self.batch.pos.device)
            self._test_batch = GraphBatch(x=self.batch.x, adj=adj, pos=pos, edge_index=edge_index,
                                          edge_weight=None if weight is None else weight.to(pos.device),
                                          features=self.batch.features)
        return self._test_batch

    def train_batches(self, model: nn.Module, *, rank: int = 0, world_size: int = 1) -> TrainEpochs:
        """Every process encodes the whole graph and scores its share of the pairs (see ``GraphBatch.part``)."""
        return TrainEpochs(self.batch, self.sampler, model.negatives_per_positive, part=(rank, world_size))

    metric_names = ("auc", "ap")  # what evaluate() reports per split

    def splits_absent(self) -> list[str]:
        """Held-out splits without pairs (``split.val_frac=0`` or ``split.test_frac=0``)."""
        return [split for split in ("val", "test") if getattr(self.split, f"{split}_pos").size(1) == 0]

    def scores(self, model: nn.Module, split: str) -> tuple[Tensor, Tensor]:
        """Logits of the ``split`` (val or test) positives and negatives; encoder on train edges."""
        pos, neg = getattr(self.split, f"{split}_pos"), getattr(self.split, f"{split}_neg")
        model.eval()
        with torch.no_grad():
            logits = model.score(self.graph_for(split), torch.cat([pos, neg], dim=1)).cpu()
        return logits[: pos.size(1)], logits[pos.size(1):]

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """``{"<split>_auc", "<split>_ap"}``; empty when the split has no pairs (nothing to score)."""
        if split in self.splits_absent():
            return {}
        pos, neg = self.scores(model, split)
        return {f"{split}_{k}": v for k, v in link_scores(pos, neg).items()}

    ranking_names = (*(f"hits_at_{k}" for k in HITS_AT), "mrr")  # what final_metrics() adds per split

    def final_metrics(self, model: nn.Module, *, node_metrics: bool = True, seed: int = 0) -> dict[str, float]:
        """Scores of the selected model computed once, after training (never during it, so that the
        per-epoch validation stays cheap and ``trainer.monitor`` keeps its keys).

        ``<split>_hits_at_20/50/100`` and ``<split>_mrr`` of the val and test pairs (OGB's definitions,
        each positive ranked against the split's fixed negatives: :func:`~vgae_toolkit.metrics.hits_at_k`,
        :func:`~vgae_toolkit.metrics.mrr`) and, with ``node_metrics`` on a graph with node labels,
        :meth:`node_metrics`.
        """
        out = {}
        for split in ("val", "test"):
            if split not in self.splits_absent():
                pos, neg = self.scores(model, split)
                out.update({f"{split}_{k}": v for k, v in ranking_scores(pos, neg).items()})
        return {**out, **(self.node_metrics(model, seed=seed) if node_metrics else {})}

    def node_metrics(self, model: nn.Module, *, seed: int = 0) -> dict[str, float]:
        """The embeddings (posterior means, encoder on the training graph) judged on the node labels
        ``data.y``, as ARGA (Pan et al. 2018) and MaskGAE report them: k-means with 10 restarts on all
        nodes (``test_cluster_acc``, ``test_cluster_nmi``, ``test_cluster_ari``) and, where the graph has
        a ``train_mask`` and ``test_mask`` (Planetoid's public split), a logistic-regression probe
        (``test_probe_acc``). Empty for a graph without one integer label per node.
        """
        y = getattr(self.data, "y", None)
        n = self.data.num_nodes
        if not isinstance(y, Tensor) or y.shape != (n,) or y.dtype.is_floating_point or y.dtype == torch.bool:
            return {}
        classes = int(torch.unique(y).numel())
        if not 2 <= classes < n:
            return {}
        emb = self.embed(model)["embeddings"].float().cpu()  # [num_nodes, latent]
        out = {f"test_{k}": v for k, v in cluster_scores(emb, y, classes, seed=seed).items()}
        train, test = getattr(self.data, "train_mask", None), getattr(self.data, "test_mask", None)
        if isinstance(train, Tensor) and isinstance(test, Tensor) and train.shape == test.shape == (n,):
            if bool(train.any()) and bool(test.any()) and int(torch.unique(y[train]).numel()) >= 2:
                out["test_probe_acc"] = linear_probe(emb, y, train, test)
        return out

    def describe(self) -> dict:
        return {
            "num_nodes": int(self.data.num_nodes),
            "num_edges": int(self.data.edge_index.size(1) // 2),
            "features": self.x is not None,
            "split_sizes": self.split.sizes(),
            "test_graph": self.test_graph,
            # the graph file's identity, where the loader read one (reports group by it, predict checks it)
            "data_sha256": getattr(self.data, "source_sha256", None),
        }

    def embed(self, model: nn.Module) -> dict[str, Tensor]:
        """Node embeddings (posterior means, encoder on the training graph): ``[num_nodes, latent]``."""
        model.eval()
        with torch.no_grad():
            return {"embeddings": model.encode(self.batch).mu}

    def node_index(self, ids: list[str]) -> Tensor:
        """Map node ids as written in the data (edge-list ids, or 0..N-1) to indices."""
        names = getattr(self.data, "node_ids", None) or [str(i) for i in range(self.data.num_nodes)]
        lookup = {name: i for i, name in enumerate(names)}
        unknown = [i for i in ids if i not in lookup]
        if unknown:
            raise DataError(f"unknown node ids {unknown[:5]} (the graph has {len(names)} nodes)")
        return torch.tensor([lookup[i] for i in ids], dtype=torch.long)

    def score_pairs(self, model: nn.Module, pairs: Tensor) -> Tensor:
        """Link probabilities sigma(z_i·z_j) for ``pairs`` ``[2, P]``."""
        model.eval()
        with torch.no_grad():
            return torch.sigmoid(model.score(self.batch, pairs.to(self.batch.pos.device))).cpu()

    def callbacks(self, model: nn.Module) -> list:
        return []

    def artefacts(self, model: nn.Module, out_dir: Path) -> list[Path]:
        return []
