"""Graph auto-encoders (GAE and VGAE) for link prediction.

Kipf & Welling, *Variational Graph Auto-Encoders* (https://arxiv.org/abs/1611.07308):
a two-layer GCN encoder q(Z|X, A) over the normalised adjacency
Â = D^-1/2 (A + I) D^-1/2 and an inner-product decoder p(A_ij = 1 | z_i, z_j) = sigma(z_i·z_j).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.inits import glorot, zeros

from vgae_toolkit.distributed import share
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.models.sparse import SparseMatrix, csr_matmul


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
    """

    x: Tensor | SparseMatrix | None
    adj: SparseMatrix
    pos: Tensor
    neg: Tensor | None = None
    part: tuple[int, int] = (0, 1)
    neg_ordered: bool = False
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return self.adj.size(0)

    def to(self, device: torch.device | str) -> GraphBatch:
        return GraphBatch(x=None if self.x is None else self.x.to(device), adj=self.adj.to(device),
                          pos=self.pos.to(device), neg=None if self.neg is None else self.neg.to(device),
                          part=self.part, neg_ordered=self.neg_ordered)  # a fresh cache: plans live on one device

    def with_negatives(self, neg: Tensor | None, part: tuple[int, int], ordered: bool = False) -> GraphBatch:
        """This epoch's batch: the same graph and cache with fresh negatives."""
        return GraphBatch(x=self.x, adj=self.adj, pos=self.pos, neg=neg, part=part, cache=self.cache,
                          neg_ordered=ordered)


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
        h = adj @ h
        return h if self.bias is None else h + self.bias


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
    """

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 32, latent: int = 16,
                 variational: bool = True, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if hidden < 1 or latent < 1:
            raise ConfigError(f"model.hidden and model.latent must be positive, got {hidden} and {latent}")
        self.dropout, self.variational = dropout, variational
        self.conv1 = GCNLayer(num_nodes if in_channels is None else in_channels, hidden, bias)
        heads = 2 if variational else 1
        self.conv2 = GCNLayer(hidden, heads * latent, bias, blocks=heads)

    def forward(self, x: Tensor | SparseMatrix | None, adj: SparseMatrix) -> Posterior:
        h = self.conv1(x, adj).relu()  # [num_nodes, hidden]
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


class _SoftplusGramSum(torch.autograd.Function):
    """sum_ij softplus(z_i . z_j) over all N^2 pairs in blocks of rows, without an N x N matrix.

    The Gram matrix is symmetric, so only the blocks on and above the diagonal are formed (half
    the exp/log work), and the backward pass recomputes them instead of saving N^2 logits:
    d/dZ = 2 sigma(Z Z^T) Z. Memory is O(block x N); 2.4-2.8x faster than autograd through
    ``softplus(z @ z.t()).sum()`` on Cora and CiteSeer (one thread). Process ``rank`` of
    ``world_size`` takes every ``world_size``-th block of rows (the later, shorter rows spread the
    work evenly); the parts add up to the whole sum.
    """

    @staticmethod
    def forward(ctx, z: Tensor, block: int, rank: int, world_size: int) -> Tensor:
        ctx.save_for_backward(z)
        ctx.block, ctx.rank, ctx.world_size = block, rank, world_size
        n, total = z.size(0), z.new_zeros(())
        for a in range(rank * block, n, world_size * block):
            za = z[a:a + block]
            total += F.softplus(za @ za.t()).sum()  # diagonal block: each pair once
            if a + block < n:
                total += 2 * F.softplus(za @ z[a + block:].t()).sum()  # (i, j) and (j, i)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (z,) = ctx.saved_tensors
        block, n = ctx.block, z.size(0)
        out = torch.zeros_like(z)
        for a in range(ctx.rank * block, n, ctx.world_size * block):
            za = z[a:a + block]
            out[a:a + block] += torch.sigmoid(za @ za.t()) @ za
            if a + block < n:
                rest = z[a + block:]
                sig = torch.sigmoid(za @ rest.t())
                out[a:a + block] += sig @ rest
                out[a + block:] += sig.t() @ za
        return out * (2 * grad), None, None, None


def softplus_gram_sum(z: Tensor, block: int = 256, part: tuple[int, int] = (0, 1)) -> Tensor:
    """``F.softplus(z @ z.t()).sum()`` with O(block x N) memory (see :class:`_SoftplusGramSum`);
    ``part=(rank, world_size)`` sums that process's blocks of rows only."""
    return _SoftplusGramSum.apply(z, block, *part)


def share_of(pairs: Tensor, part: tuple[int, int]) -> Tensor:
    """The columns of ``pairs`` ``[2, P]`` that process ``part = (rank, world_size)`` scores."""
    rank, world_size = part
    return pairs if world_size == 1 else pairs[:, share(pairs.size(1), rank, world_size)]


PAIR_CHUNK = 32768  # pairs per chunk: two gathered [chunk, latent] blocks stay in cache
KEEP_ROWS_MAX = 65536  # negatives up to which the sampled loss keeps their gathered rows for the backward pass


def inner_product(z: Tensor, pairs: Tensor) -> Tensor:
    """Decoder logits z_i·z_j for the given pairs only: ``[P]`` (no N x N tensor).

    Up to ``PAIR_CHUNK`` pairs at a time: on a million-node graph the gathered rows of all pairs
    are hundreds of MB, and streaming them through memory made the gather 2x slower per pair
    than on a graph whose rows fit in cache.
    """
    if pairs.size(1) <= PAIR_CHUNK:
        return (z.index_select(0, pairs[0]) * z.index_select(0, pairs[1])).sum(dim=-1)
    return torch.cat([inner_product(z, pairs[:, a:a + PAIR_CHUNK]) for a in range(0, pairs.size(1), PAIR_CHUNK)])


def scatter_pair_grads(out: Tensor, z: Tensor, pairs: Tensor, grad: Tensor,
                       rows: tuple[Tensor, Tensor] | tuple[()] = (), crow: Tensor | None = None) -> Tensor:
    """``out`` += d/dZ of sum_p grad_p z_i·z_j (rows i get grad_p z_j, rows j get grad_p z_i), in chunks.

    ``rows``: ``(z[i], z[j])`` for all pairs if the caller kept them from the forward pass (else gathered here).
    ``crow``: CSR row pointers of the pairs' first nodes when ``pairs`` are ordered by them; rows i then
    get their part as one sparse product (a gather and a sum per row, no scatter).
    """
    if crow is not None:
        out.add_(csr_matmul(crow, pairs[1], grad, z))
    for a in range(0, pairs.size(1), PAIR_CHUNK):
        i, j, g = pairs[0, a:a + PAIR_CHUNK], pairs[1, a:a + PAIR_CHUNK], grad[a:a + PAIR_CHUNK].unsqueeze(1)
        if crow is None:
            out.index_add_(0, i, (rows[1][a:a + PAIR_CHUNK] if rows else z.index_select(0, j)) * g)
        out.index_add_(0, j, (rows[0][a:a + PAIR_CHUNK] if rows else z.index_select(0, i)) * g)
    return out


@dataclass(frozen=True)
class PairPlan:
    """The gradient of pair logits as one sparse product, for pairs that stay fixed over epochs.

    With g_p the gradient of logit p = z_i·z_j, dL/dZ = S Z for the N x N matrix S holding g_p at
    (i, j) and at (j, i). Autograd through ``index_select`` scatters the rows instead
    (``index_add``, one random write per pair and side: 1.4 ms per call on PubMed's 38k training
    edges here); ordering S's entries by row once turns every epoch's backward pass into a gather of
    g and one CSR product (0.3 ms).

    Attributes:
        pairs: the pairs ``[2, P]``.
        crow, col: CSR structure of S (``2P`` entries, rows ascending).
        src: for each entry of S, the pair whose gradient it holds.
    """

    pairs: Tensor
    crow: Tensor
    col: Tensor
    src: Tensor

    @classmethod
    def build(cls, pairs: Tensor, num_nodes: int) -> PairPlan:
        rows, cols = torch.cat([pairs[0], pairs[1]]), torch.cat([pairs[1], pairs[0]])
        order = torch.argsort(rows * num_nodes + cols)
        crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=pairs.device)
        crow[1:] = torch.bincount(rows, minlength=num_nodes).cumsum(0)
        return cls(pairs, crow, cols[order], order % pairs.size(1))

    def logits(self, z: Tensor) -> Tensor:
        """``inner_product(z, self.pairs)`` with the planned backward pass."""
        return _PlannedPairLogits.apply(z, self)


class _PlannedPairLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, plan: PairPlan) -> Tensor:
        ctx.save_for_backward(z)
        ctx.plan = plan
        return inner_product(z, plan.pairs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        plan = ctx.plan
        return csr_matmul(plan.crow, plan.col, grad.index_select(0, plan.src), z), None


def sorted_pairs(pairs: Tensor, num_nodes: int) -> Tensor:
    """``pairs`` ordered by first, then second node: for a loss that only sums over them, the same
    terms, and the rows of Z that the pairs gather are read in order instead of at random (the split
    shuffles the edges). On a million-node graph, whose Z does not fit in cache, that is most of the
    cost of the edges' forward pass."""
    return pairs.index_select(1, torch.argsort(pairs[0] * num_nodes + pairs[1]))


def cached_plan(cache: dict, key: object, source: Tensor, make_pairs, num_nodes: int) -> PairPlan:
    """The :class:`PairPlan` of ``make_pairs()``, pairs that stay fixed while ``source`` (a constant
    tensor of the batch) does: built on first use and kept in ``cache[key]``."""
    entry = cache.get(key)
    if entry is None or entry[0] is not source:
        entry = cache[key] = (source, PairPlan.build(make_pairs(), num_nodes))
    return entry[1]


class _SampledBCE(torch.autograd.Function):
    """w_pos sum_edges softplus(-z_i·z_j) + w_neg sum_negatives softplus(z_i·z_j), one autograd node.

    The edges' gradient goes through their :class:`PairPlan`; the negatives, fresh every epoch, are
    scattered with ``index_add`` (:func:`scatter_pair_grads`; on the first nodes' side one CSR product
    when ``ordered``). Equal to autograd through :func:`inner_product` and ``softplus`` (tested),
    without its dozen nodes per epoch.
    """

    @staticmethod
    def forward(ctx, z: Tensor, plan: PairPlan, neg: Tensor, w_pos: float, w_neg: float, ordered: bool) -> Tensor:
        ctx.crow = None
        if ordered:  # the negatives' first nodes are in order: CSR row pointers for the backward pass
            ctx.crow = torch.zeros(z.size(0) + 1, dtype=neg.dtype, device=neg.device)
            ctx.crow[1:] = torch.bincount(neg[0], minlength=z.size(0)).cumsum(0)
        pos_logits = inner_product(z, plan.pairs)
        if neg.size(1) <= KEEP_ROWS_MAX:  # keep the gathered rows (8 MB at most): the backward pass needs them
            rows = (z.index_select(0, neg[0]), z.index_select(0, neg[1]))
            neg_logits = (rows[0] * rows[1]).sum(dim=-1)
        else:  # on large graphs they would be hundreds of MB: gathered again in the backward pass, in chunks
            rows, neg_logits = (), inner_product(z, neg)
        ctx.save_for_backward(z, pos_logits, neg_logits, neg, *rows)
        ctx.plan, ctx.w_pos, ctx.w_neg = plan, w_pos, w_neg
        return w_pos * F.softplus(-pos_logits).sum() + w_neg * F.softplus(neg_logits).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, pos_logits, neg_logits, neg, *rows = ctx.saved_tensors
        plan = ctx.plan
        g_pos = torch.sigmoid(-pos_logits).mul_(-ctx.w_pos * grad)  # d softplus(-l)/dl = -sigma(-l)
        g_neg = torch.sigmoid(neg_logits).mul_(ctx.w_neg * grad)
        out = csr_matmul(plan.crow, plan.col, g_pos.index_select(0, plan.src), z)
        return scatter_pair_grads(out, z, neg, g_neg, tuple(rows), ctx.crow), None, None, None, None, None


class GraphAutoEncoder(nn.Module):
    """GAE (``variational=False``) or VGAE with a choice of reconstruction loss.

    Args:
        in_channels, num_nodes: filled in from the data at run time.
        hidden, latent, variational, dropout, bias: see :class:`GCNEncoder`.
        recon (str): ``dense`` — the paper's weighted BCE over all N^2 pairs with
            ``pos_weight`` and ``norm`` (reference code, ``optimizer.py``), O(N^2) time but
            O(block x N) memory (:func:`softplus_gram_sum`); ``sampled`` — BCE on the training edges and
            ``neg_ratio`` uniform negatives per edge, O(E) per epoch; ``auto`` — ``dense`` up
            to ``dense_max_nodes`` nodes, ``sampled`` above (the resolved choice is ``self.recon``).
        neg_ratio (int): sampled negatives per positive edge (``recon=sampled``).
        dense_self_loops (bool): the dense loss's labels are A_train + I (``True``): the paper's A,
            whose diagonal is set to 1, and the reference code's ``adj_label``; ``False`` labels the
            links alone, without the N self-pairs, as the sampled loss does (PyG's example).
            ``pos_weight`` and ``norm`` count the edges of A_train either way.
        kl_weight (float, optional): weight of the node-averaged KL; ``None`` = 1/N, the
            reference code's factor (it divides the mean KL by N once more).
        dense_max_nodes (int): largest graph for which ``recon=auto`` picks ``dense`` (an explicit
            ``recon=dense`` runs at any size: PubMed takes about 2.5 s per epoch on one core).
    """

    kind = "graph"

    def __init__(self, *, in_channels: int | None, num_nodes: int, hidden: int = 32, latent: int = 16,
                 variational: bool = True, dropout: float = 0.0, bias: bool = True, recon: str = "auto",
                 neg_ratio: int = 1, kl_weight: float | None = None, dense_max_nodes: int = 10_000,
                 dense_self_loops: bool = True) -> None:
        super().__init__()
        if recon not in ("auto", "sampled", "dense"):
            raise ConfigError(f"model.recon: expected 'auto', 'sampled' or 'dense', got {recon!r}")
        if recon == "auto":
            recon = "dense" if num_nodes <= dense_max_nodes else "sampled"
        if recon == "sampled" and neg_ratio < 1:
            raise ConfigError(f"model.neg_ratio must be at least 1 with recon=sampled, got {neg_ratio}")
        self.encoder = GCNEncoder(in_channels=in_channels, num_nodes=num_nodes, hidden=hidden, latent=latent,
                                  variational=variational, dropout=dropout, bias=bias)
        self.recon, self.neg_ratio, self.dense_self_loops = recon, neg_ratio, bool(dense_self_loops)
        self.kl_weight = 1.0 / num_nodes if kl_weight is None else float(kl_weight)

    def describe(self) -> dict:
        """The resolved loss settings, for ``metrics.json``."""
        return {"recon": self.recon, "kl_weight": self.kl_weight,
                "neg_ratio": self.neg_ratio if self.recon == "sampled" else None,
                "dense_self_loops": self.dense_self_loops if self.recon == "dense" else None}

    @property
    def negatives_per_positive(self) -> int:
        """How many negatives per edge the training batches must carry (0: none needed)."""
        return self.neg_ratio if self.recon == "sampled" else 0

    def encode(self, batch: GraphBatch) -> Posterior:
        return self.encoder(batch.x, batch.adj)

    def loss(self, batch: GraphBatch) -> dict[str, Tensor]:
        posterior = self.encode(batch)
        z, kl = posterior.rsample_and_mean_kl()  # z: [num_nodes, latent]; kl: mean over nodes
        if self.recon == "dense":
            recon = self._dense_recon(z, batch.pos, batch.part, batch.cache, self.dense_self_loops)
        else:
            recon = self._sampled_recon(z, batch)
        return {"loss": recon + self.kl_weight * kl, "recon": recon, "kl": kl}

    def _sampled_recon(self, z: Tensor, batch: GraphBatch) -> Tensor:
        if batch.neg is None:
            raise ValueError("recon=sampled needs negatives in the batch")
        part = batch.part
        plan = cached_plan(batch.cache, ("pos", part), batch.pos,
                           lambda: sorted_pairs(share_of(batch.pos, part), z.size(0)), z.size(0))
        # mean over all pairs of -log sigma(l) (edges) and -log(1 - sigma(l)) (negatives); with several
        # processes, this process's sums scaled so that the mean over processes is that mean
        return _SampledBCE.apply(z, plan, share_of(batch.neg, part),  # (a share of ordered pairs is ordered)
                                 part[1] / batch.pos.size(1), part[1] / batch.neg.size(1), batch.neg_ordered)

    @staticmethod
    def _dense_recon(z: Tensor, pos: Tensor, part: tuple[int, int] = (0, 1), cache: dict | None = None,
                     self_loops: bool = True) -> Tensor:
        # Paper and reference code: labels A_train + I over all N^2 pairs (self_loops=False: A_train,
        # no self-pair labelled); pos_weight and norm use the edge count of A_train without the
        # self-loops. Summing softplus(l) over all pairs and correcting on the positives avoids an
        # N x N label matrix:
        # p*y*softplus(-l) + (1-y)*softplus(l) = softplus(l) + y*(p*softplus(-l) - softplus(l)).
        n = z.size(0)
        num_ones = 2 * pos.size(1)
        pos_weight = (n * n - num_ones) / num_ones
        norm = n * n / (2.0 * (n * n - num_ones))
        total = softplus_gram_sum(z, part=part)
        diag = torch.arange(n if self_loops else 0, device=z.device)
        labelled = lambda: share_of(torch.cat([pos, pos.flip(0), torch.stack([diag, diag])], dim=1), part)  # noqa: E731
        logits = cached_plan({} if cache is None else cache, ("dense", part, self_loops), pos, labelled, n).logits(z)
        total = total + (pos_weight * F.softplus(-logits) - F.softplus(logits)).sum()
        if part[1] > 1:  # this process's share of the sum: the mean over processes is the whole loss
            total = total * part[1]
        return norm * total / (n * n)

    @torch.no_grad()
    def score(self, batch: GraphBatch, pairs: Tensor) -> Tensor:
        """Logits of the given pairs from the posterior means (as the reference evaluation)."""
        return inner_product(self.encode(batch).mu, pairs)
