"""A user's graph as the link task needs it: checked, never silently changed, split only if not split.

:func:`prepare_graph` takes a ``torch_geometric.data.Data`` and returns the undirected graph the
protocol works on: every change (reverse edges added, self-loops and duplicates dropped) is logged
with its count. ``edge_weight`` is kept, one weight per undirected edge. :func:`given_split` reads a
split the user already made (the three ``Data`` objects of ``RandomLinkSplit``, or the
``*_pos_edge_index`` / ``*_neg_edge_index`` tensors of a single ``Data``) into a
:class:`~vgae_toolkit.splits.LinkSplit`, so it is used as given and never split again.
"""
from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch_geometric.data import Data

from vgae_toolkit.errors import DataError
from vgae_toolkit.splits import LinkSplit, pair_keys

log = logging.getLogger(__name__)

SPLIT_TENSORS = ("train_pos_edge_index", "val_pos_edge_index", "val_neg_edge_index", "test_pos_edge_index",
                 "test_neg_edge_index")


def _check_pairs(pairs, num_nodes: int, what: str) -> Tensor:
    if not isinstance(pairs, Tensor) or pairs.dim() != 2 or pairs.size(0) != 2:
        raise DataError(f"{what}: expected a [2, E] tensor of node indices, got "
                        f"{type(pairs).__name__} {tuple(getattr(pairs, 'shape', ()))}")
    if pairs.dtype.is_floating_point or pairs.dtype == torch.bool or pairs.is_complex():
        raise DataError(f"{what}: node indices must be integers, got {pairs.dtype}")
    pairs = pairs.long()
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes):
        raise DataError(f"{what}: node indices must be in [0, {num_nodes}), got {int(pairs.min())}..{int(pairs.max())}")
    return pairs


def _num_nodes(data: Data) -> int:
    n = data.num_nodes
    if n is None or n < 2:
        raise DataError(f"the graph needs at least 2 nodes, got {n}")
    return int(n)


def prepare_graph(data: Data) -> Data:
    """The undirected, loop-free, duplicate-free graph of ``data``, each change logged with its count.

    Returns a new ``Data`` with ``x`` (or ``None``), ``edge_index`` (both directions of every edge),
    ``edge_weight`` (per directed edge, equal in both directions: the mean of the weights given for
    that pair) when ``data`` has one, and ``num_nodes``.

    Raises:
        DataError: a malformed ``edge_index``, ``edge_weight`` or ``x``.
    """
    if not isinstance(data, Data):
        raise DataError(f"expected a torch_geometric.data.Data, got {type(data).__name__}")
    n = _num_nodes(data)
    edge_index = _check_pairs(data.edge_index, n, "data.edge_index")
    weight = getattr(data, "edge_weight", None)
    if weight is not None:
        weight = torch.as_tensor(weight)
        if weight.shape != (edge_index.size(1),) or not weight.dtype.is_floating_point:
            raise DataError(f"data.edge_weight: expected {edge_index.size(1)} float weights, one per edge, got "
                            f"{weight.dtype} {tuple(weight.shape)}")
        if not bool(torch.isfinite(weight).all()) or bool((weight <= 0).any()):
            raise DataError("data.edge_weight: weights must be finite and positive")
    x = data.x
    if x is not None:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != n or x.size(1) < 1:
            raise DataError(f"data.x: expected [{n}, features] with at least one feature, got {tuple(x.shape)}")
        if not bool(torch.isfinite(x.float()).all()):
            raise DataError("data.x: features must be finite (NaN or inf found)")
        x = x.float()
    loops = edge_index[0] == edge_index[1]
    keys = pair_keys(edge_index[:, ~loops], n)
    unique, inverse = torch.unique(keys, return_inverse=True)
    directed = edge_index[:, ~loops]
    has_reverse = torch.isin(directed[0] * n + directed[1], directed[1] * n + directed[0])
    given = int((~loops).sum())
    duplicates = given - int(torch.unique(directed[0] * n + directed[1]).numel())
    lone = int((~has_reverse).sum())
    rows, cols = unique // n, unique % n
    both = torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])])
    if int(loops.sum()):
        log.info("graph: dropped %d self-loops", int(loops.sum()))
    if duplicates:
        log.info("graph: dropped %d duplicate edges", duplicates)
    if lone:
        log.info("graph: %d directed edges had no reverse; the graph is symmetrised (reverse edges added)", lone)
    out = Data(x=x, edge_index=both, num_nodes=n)
    if weight is not None:
        sums = torch.zeros(unique.numel(), dtype=weight.dtype).index_add_(0, inverse, weight[~loops])
        counts = torch.zeros(unique.numel(), dtype=weight.dtype).index_add_(0, inverse, torch.ones_like(weight[~loops]))
        if bool((counts > 1).any()):
            log.info("graph: %d node pairs had several weights (both directions or duplicates): their mean is used",
                     int((counts > 1).sum()))
        mean = sums / counts
        out.edge_weight = torch.cat([mean, mean]).float()
    for name in ("y", "train_mask", "val_mask", "test_mask", "node_ids", "source_sha256"):
        if getattr(data, name, None) is not None:
            out[name] = data[name]
    return out


def _pairs_below(pairs: Tensor, n: int) -> Tensor:
    """Undirected pairs with ``row < col``, duplicates and self-loops dropped, in key order."""
    keys = torch.unique(pair_keys(pairs[:, pairs[0] != pairs[1]], n))
    return torch.stack([keys // n, keys % n])


def given_split(data) -> tuple[Data, LinkSplit] | None:
    """``(graph, split)`` from a split the user made, or ``None`` when ``data`` holds none.

    Accepts the ``(train, val, test)`` ``Data`` triple of ``torch_geometric.transforms.RandomLinkSplit``
    (labels from ``edge_label`` / ``edge_label_index``; the encoder is given ``train.edge_index``, the
    training edges, at every stage) or one ``Data`` with the tensors ``train_pos_edge_index``,
    ``val_pos_edge_index``, ``val_neg_edge_index``, ``test_pos_edge_index``, ``test_neg_edge_index``
    (and, optionally, the whole graph's ``edge_index``; the encoder still sees the training edges only).
    """
    if isinstance(data, (tuple, list)):
        if len(data) != 3 or not all(isinstance(d, Data) for d in data):
            raise DataError("a ready-made split is three Data objects (train, val, test), as RandomLinkSplit returns")
        train, val, test = data
        n = _num_nodes(train)
        parts = {}
        for name, part in (("val", val), ("test", test)):
            label, index = getattr(part, "edge_label", None), getattr(part, "edge_label_index", None)
            if label is None or index is None:
                raise DataError(f"{name} Data of the split has no edge_label / edge_label_index")
            index = _check_pairs(index, n, f"{name}.edge_label_index")
            parts[f"{name}_pos"], parts[f"{name}_neg"] = index[:, label == 1], index[:, label == 0]
        graph = prepare_graph(Data(x=train.x, edge_index=train.edge_index, num_nodes=n,
                                   **({"edge_weight": train.edge_weight} if "edge_weight" in train else {})))
        parts["train_pos"] = graph.edge_index
    elif isinstance(data, Data) and all(getattr(data, name, None) is not None for name in SPLIT_TENSORS):
        n = _num_nodes(data)
        parts = {name.removesuffix("_edge_index"): _check_pairs(data[name], n, f"data.{name}") for name in SPLIT_TENSORS}
        if getattr(data, "edge_index", None) is not None:  # the whole graph: features, weights, ids come with it
            graph = prepare_graph(data)
        else:
            graph = prepare_graph(Data(x=data.x, edge_index=parts["train_pos"], num_nodes=n))
    else:
        return None
    split = LinkSplit(num_nodes=n, **{name: _pairs_below(pairs, n) for name, pairs in parts.items()})
    _check_disjoint(split)
    return graph, split


def _check_disjoint(split: LinkSplit) -> None:
    n = split.num_nodes
    sets = {name: set(pair_keys(getattr(split, name), n).tolist()) for name in LinkSplit.PAIRS}
    if not sets["train_pos"]:
        raise DataError("the given split has no training edges")
    for a, b in (("train_pos", "val_pos"), ("train_pos", "test_pos"), ("val_pos", "test_pos"),
                 ("train_pos", "val_neg"), ("train_pos", "test_neg"), ("val_pos", "val_neg"),
                 ("test_pos", "test_neg"), ("val_pos", "test_neg"), ("test_pos", "val_neg")):
        both = sets[a] & sets[b]
        if both:
            raise DataError(f"the given split is not disjoint: {len(both)} pairs are both {a} and {b}")


def save_graph(path, data: Data, split: LinkSplit) -> None:
    """Save a graph and its split as plain tensors (loadable with ``weights_only=True``)."""
    from vgae_toolkit.checkpoint import atomic_save

    payload = {"num_nodes": int(data.num_nodes), "edge_index": data.edge_index, **{k: getattr(split, k) for k in
                                                                                   LinkSplit.PAIRS}}
    for name in ("x", "edge_weight"):
        if getattr(data, name, None) is not None:
            payload[name] = data[name]
    if getattr(data, "node_ids", None) is not None:
        payload["node_ids"] = [str(i) for i in data.node_ids]
    atomic_save(payload, path)


def load_graph(path) -> Data:
    """The graph and split :func:`save_graph` wrote, as a ``Data`` with the split's tensors."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        n = int(payload["num_nodes"])
        data = Data(x=payload.get("x"), edge_index=payload["edge_index"], num_nodes=n,
                    **{f"{k.removesuffix('_pos')}_pos_edge_index" if k.endswith("_pos") else
                       f"{k.removesuffix('_neg')}_neg_edge_index": payload[k] for k in LinkSplit.PAIRS})
    except Exception as err:  # noqa: BLE001 - any failure: the file is not a saved graph
        raise DataError(f"graph file {path}: not a graph saved by a run ({type(err).__name__}: {err})") from err
    if payload.get("edge_weight") is not None:
        data.edge_weight = payload["edge_weight"]
    if payload.get("node_ids") is not None:
        data.node_ids = payload["node_ids"]
    return data
