"""Link-prediction splits: held-out positive edges with fixed, seeded negatives.

The protocol of the VGAE paper's reference code (85/5/10): undirected edges are split
into train/val/test; val and test negatives are non-edges of the *full* graph, sampled
once and disjoint from each other; the encoder only ever sees the training edges.
Training negatives are resampled every epoch among pairs that are not training edges
(the model must not know the held-out edges, so those may appear as negatives, exactly
as in the dense reference loss).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from vgae_toolkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class LinkSplit:
    """Pairs are ``[2, P]`` LongTensors with ``row < col``; ``train_edge_index`` has both directions."""

    num_nodes: int
    train_pos: Tensor
    val_pos: Tensor
    val_neg: Tensor
    test_pos: Tensor
    test_neg: Tensor

    PAIRS = ("train_pos", "val_pos", "val_neg", "test_pos", "test_neg")  # not a field: no annotation

    @property
    def train_edge_index(self) -> Tensor:
        return torch.cat([self.train_pos, self.train_pos.flip(0)], dim=1)

    def to(self, device: torch.device | str) -> LinkSplit:
        return replace(self, **{name: getattr(self, name).to(device) for name in self.PAIRS})

    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self, name).size(1)) for name in self.PAIRS}


def pair_keys(pairs: Tensor, num_nodes: int) -> Tensor:
    """Encode undirected pairs as one int64 each (order-free: ``min * N + max``)."""
    lo, hi = torch.minimum(pairs[0], pairs[1]), torch.maximum(pairs[0], pairs[1])
    return lo * num_nodes + hi


def split_edges(edge_index: Tensor, num_nodes: int, *, val_frac: float = 0.05, test_frac: float = 0.10, seed: int = 0) -> LinkSplit:
    """Split an undirected graph's edges into train/val/test with fixed negatives.

    Args:
        edge_index (Tensor): both directions of every edge, no self-loops, ``[2, 2E]``.
        num_nodes (int): number of nodes N.
        val_frac, test_frac (float): fractions of undirected edges held out (paper: 5%, 10%).
        seed (int): the split's own seed; the same seed gives the same split for every model.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ConfigError(f"split: val_frac={val_frac} and test_frac={test_frac} must be in [0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    row, col = edge_index
    undirected = edge_index[:, row < col]  # [2, E]
    num_edges = undirected.size(1)
    num_val, num_test = int(np.floor(num_edges * val_frac)), int(np.floor(num_edges * test_frac))
    num_train = num_edges - num_val - num_test
    if num_train < 1 or (val_frac > 0 and num_val < 1) or (test_frac > 0 and num_test < 1):
        raise ConfigError(
            f"split: a graph with {num_edges} undirected edges cannot be split {1 - val_frac - test_frac:.2f}/"
            f"{val_frac:.2f}/{test_frac:.2f} (train {num_train}, val {num_val}, test {num_test} edges); "
            "use a larger graph or other split.val_frac/split.test_frac"
        )
    perm = torch.as_tensor(rng.permutation(num_edges))
    val_pos = undirected[:, perm[:num_val]]
    test_pos = undirected[:, perm[num_val : num_val + num_test]]
    train_pos = undirected[:, perm[num_val + num_test :]]
    negatives = sample_non_edges(pair_keys(undirected, num_nodes), num_nodes, num_val + num_test, rng)
    return LinkSplit(
        num_nodes=num_nodes,
        train_pos=_sorted(train_pos, num_nodes),
        val_pos=_sorted(val_pos, num_nodes),
        val_neg=negatives[:, :num_val],
        test_pos=_sorted(test_pos, num_nodes),
        test_neg=negatives[:, num_val:],
    )


def _sorted(pairs: Tensor, num_nodes: int) -> Tensor:
    # A canonical order keeps results independent of the permutation's internals.
    return pairs[:, torch.argsort(pair_keys(pairs, num_nodes))]


def sample_non_edges(forbidden_keys: Tensor, num_nodes: int, count: int, rng: np.random.Generator) -> Tensor:
    """``count`` distinct node pairs (``row < col``) whose keys are not in ``forbidden_keys``."""
    forbidden = np.unique(forbidden_keys.numpy())
    available = num_nodes * (num_nodes - 1) // 2 - forbidden.size
    if count > available:  # distinct pairs: the draws below could never finish
        raise ConfigError(
            f"split: the graph has too few non-edges for the {count} validation and test negatives: {num_nodes} "
            f"nodes and {forbidden.size} edges leave {available} non-edge{'s' * (available != 1)}; hold out fewer "
            "edges (split.val_frac, split.test_frac) or use a sparser graph"
        )
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < count:
        need = count - chosen.size
        row = rng.integers(0, num_nodes, size=2 * need + 16)
        col = rng.integers(0, num_nodes, size=2 * need + 16)
        keep = row != col
        keys = np.minimum(row, col)[keep] * num_nodes + np.maximum(row, col)[keep]
        keys = keys[~np.isin(keys, forbidden) & ~np.isin(keys, chosen)]
        _, first = np.unique(keys, return_index=True)  # drop repeats, keep draw order
        chosen = np.concatenate([chosen, keys[np.sort(first)][:need]])
    chosen = torch.as_tensor(chosen)
    return torch.stack([chosen // num_nodes, chosen % num_nodes])


def without_columns(pairs: Tensor, drop: Tensor, few: int = 64) -> Tensor:
    """The columns of ``pairs`` ``[2, P]`` where the bool mask ``drop`` ``[P]`` is false, in order.

    Rejections are rare in a sparse graph (Cora: about 7 of 4,900 candidate pairs), so up to ``few``
    of them the kept runs between them are joined with one ``cat``: 2-3x cheaper than ``masked_select``,
    which tests and moves every element one at a time.
    """
    where = drop.nonzero().squeeze(1)
    if where.numel() > few:
        return pairs.masked_select(~drop).view(2, -1)
    runs, start = [], 0
    for stop in where.tolist():
        runs.append(pairs[:, start:stop])
        start = stop + 1
    runs.append(pairs[:, start:])
    return torch.cat(runs, dim=1)


class KeySet:
    """Membership tests for a fixed set of int64 keys, fast at any size.

    A sorted array answers exactly with a binary search, but a search per query misses the cache
    at every step once the array outgrows it. A byte table indexed by a multiplicative hash of the
    key, with 8 to 16 slots per key, rules out most queries with one lookup (about 7% pass); only
    those are searched. Answers are exact either way.
    """

    _MULTIPLIER = 0x9E3779B97F4A7C15 - (1 << 64)  # 2^64 / golden ratio, as a signed int64

    def __init__(self, keys: Tensor) -> None:
        self.keys = torch.unique(keys)  # sorted
        self.bits = max(10, (8 * self.keys.numel() - 1).bit_length())
        self.table = torch.zeros(1 << self.bits, dtype=torch.bool)
        self.table[self._slot(self.keys)] = True

    def _slot(self, keys: Tensor) -> Tensor:
        # the top ``bits`` bits of key * multiplier (mod 2^64); the mask undoes the sign extension
        return ((keys * self._MULTIPLIER) >> (64 - self.bits)) & ((1 << self.bits) - 1)

    def contains(self, keys: Tensor) -> Tensor:
        """A bool mask: which of ``keys`` are in the set."""
        found = self.table.index_select(0, self._slot(keys))
        candidates = found.nonzero().squeeze(1)
        if candidates.numel() and self.keys.numel():
            wanted = keys.index_select(0, candidates)
            at = torch.searchsorted(self.keys, wanted).clamp_(max=self.keys.numel() - 1)
            found.index_copy_(0, candidates, self.keys.index_select(0, at) == wanted)
        return found


class NegativeSampler:
    """Uniform training negatives, resampled per call, never a known training edge nor a self-loop.

    Ordered pairs (i, j) are drawn uniformly and rejected if i = j or if {i, j} is a training edge,
    so the result is uniform over the remaining pairs. Membership is one lookup per pair in a byte
    table of all N^2 ordered pairs where that is at most ``direct_max`` bytes, and a
    :class:`KeySet` of the undirected training edges above. Both give the same pairs
    for the same generator.

    On graphs of at least ``ordered_min`` nodes the pairs come ordered by their first node
    (``ordered`` is then true): the number of pairs per first node is drawn as a whole (a multinomial,
    by counting uniform draws), the second nodes uniformly, and the few rejected pairs are drawn again
    and put in their place in the order. The same distribution (independent pairs, uniform over the
    allowed ones) in another order: the loss then reads the first nodes' rows in sequence and sums
    their gradients as a sparse product instead of a scatter. That pays on large graphs only, so
    the default (25,000) leaves Cora, CiteSeer and PubMed, and Table 1's draws, as they were.

    Args:
        train_pos (Tensor): training edges ``[2, E]`` (either orientation).
        num_nodes (int): number of nodes.
        generator (torch.Generator): the sampler's own seeded stream.
        direct_max (int): largest N^2 for the direct table.
        ordered_min (int): smallest graph whose pairs come ordered by first node.
    """

    def __init__(self, train_pos: Tensor, num_nodes: int, generator: torch.Generator,
                 direct_max: int = 1 << 24, ordered_min: int = 25_000) -> None:
        n = self.num_nodes = num_nodes
        self.generator = generator
        self.ordered = num_nodes >= ordered_min
        self.table: Tensor | None = None
        self.forbidden: KeySet | None = None
        if n * n <= direct_max:
            loops = torch.arange(n) * (n + 1)
            self.table = torch.zeros(n * n, dtype=torch.bool)
            self.table[torch.cat([train_pos[0] * n + train_pos[1], train_pos[1] * n + train_pos[0], loops])] = True
            edge_keys = torch.unique(pair_keys(train_pos, n))
        else:
            self.forbidden = KeySet(pair_keys(train_pos, n))
            edge_keys = self.forbidden.keys
        # pairs a negative may be: without one, rejection sampling would never finish
        self.num_pairs = n * (n - 1) // 2
        self.num_allowed = self.num_pairs - int((edge_keys // n != edge_keys % n).sum())

    def _rejected(self, pairs: Tensor) -> Tensor:
        if self.table is not None:
            return self.table.index_select(0, torch.add(pairs[1], pairs[0], alpha=self.num_nodes))
        return (pairs[0] == pairs[1]) | self.forbidden.contains(pair_keys(pairs, self.num_nodes))

    def __call__(self, count: int) -> Tensor:
        if count <= 0:
            return torch.empty(2, 0, dtype=torch.long)
        if self.num_allowed == 0:  # pairs repeat, so any count works with one allowed pair
            raise DataError(
                f"the training graph has too few non-edges for the {count} requested negatives: all "
                f"{self.num_pairs} node pairs of its {self.num_nodes} nodes are training edges; use "
                "model.recon=dense, which needs no negatives"
            )
        return self._ordered(count) if self.ordered else self._in_draw_order(count)

    def _ordered(self, count: int) -> Tensor:
        n, g = self.num_nodes, self.generator
        per_node = torch.bincount(torch.randint(0, n, (count,), generator=g), minlength=n)
        first = torch.repeat_interleave(torch.arange(n), per_node, output_size=count)
        pairs = torch.stack([first, torch.randint(0, n, (count,), generator=g)])
        rejected = self._rejected(pairs)
        if not bool(rejected.any()):
            return pairs
        kept = without_columns(pairs, rejected)
        again = self._in_draw_order(count - kept.size(1))
        again = again.index_select(1, torch.argsort(again[0], stable=True))
        # merge: each redrawn pair goes after the kept pairs with the same or a smaller first node
        after = torch.searchsorted(kept[0], again[0], right=True)
        if after.numel() <= 64:  # the usual case on a sparse graph: join the runs between them
            runs, start = [], 0
            for k, stop in enumerate(after.tolist()):
                runs += [kept[:, start:stop], again[:, k:k + 1]]
                start = stop
            runs.append(kept[:, start:])
            return torch.cat(runs, dim=1)
        at = after + torch.arange(again.size(1))
        out = torch.empty(2, count, dtype=pairs.dtype)
        slots = torch.ones(count, dtype=torch.bool)
        slots[at] = False
        out[:, at] = again
        out[:, slots] = kept
        return out

    def _in_draw_order(self, count: int) -> Tensor:
        parts, have = [], 0
        while have < count:
            # Oversample a little: non-edges dominate sparse graphs, so one round nearly always suffices.
            draw = int((count - have) * 1.1) + 8
            pairs = torch.randint(0, self.num_nodes, (2, draw), generator=self.generator)
            kept = without_columns(pairs, self._rejected(pairs))
            parts.append(kept)
            have += kept.size(1)
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return out[:, :count]
