"""Pure metric functions: tensors in, numbers out.

Link-prediction scores are computed in torch on the logits, so that evaluating the fixed
validation pairs every epoch costs about as much as a forward pass. They agree with
scikit-learn's ``roc_auc_score`` and ``average_precision_score`` (ties included).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    scores = scores.detach().reshape(-1).double()
    labels = labels.detach().reshape(-1).bool()
    if scores.numel() != labels.numel():
        raise ValueError(f"scores ({scores.numel()}) and labels ({labels.numel()}) differ in length")
    num_pos = int(labels.sum())
    if num_pos == 0 or num_pos == labels.numel():
        raise ValueError("AUC/AP need both positive and negative examples")
    return scores, labels


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties).

    Args:
        scores (Tensor): any monotone score, e.g. logits, ``[n]``.
        labels (Tensor): 1 for positives, 0 for negatives, ``[n]``.
    """
    scores, labels = _check(scores, labels)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # Mid-rank of each distinct value: ranks are 1-based, tied values share the mean rank.
    ends = counts.cumsum(0).double()
    mid_ranks = ends - (counts.double() - 1) / 2
    ranks = mid_ranks[inverse]
    num_pos = labels.sum().double()
    num_neg = labels.numel() - num_pos
    u = ranks[labels].sum() - num_pos * (num_pos + 1) / 2
    return float(u / (num_pos * num_neg))


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision, sum_n (R_n - R_{n-1}) P_n over distinct thresholds (as scikit-learn)."""
    scores, labels = _check(scores, labels)
    order = torch.argsort(scores, descending=True, stable=True)
    scores, labels = scores[order], labels[order].double()
    tp = labels.cumsum(0)
    # Keep the last position of each run of tied scores: one operating point per threshold.
    last = torch.ones_like(labels, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tp = tp[last]
    predicted = torch.nonzero(last).reshape(-1).double() + 1
    precision = tp / predicted
    recall = tp / tp[-1]
    recall_step = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((recall_step * precision).sum())


def link_scores(pos_logits: Tensor, neg_logits: Tensor) -> dict[str, float]:
    """AUC and AP of positive vs negative pair logits: ``{"auc": ..., "ap": ...}``."""
    scores = torch.cat([pos_logits.reshape(-1), neg_logits.reshape(-1)])
    labels = torch.cat([torch.ones(pos_logits.numel()), torch.zeros(neg_logits.numel())])
    return {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels)}


# -- Latent-variable image models (VAE): log-likelihood estimates and latent usage ---------
# These take a model with ``encode(x, y) -> Posterior``, ``decode(z, y)`` and
# ``log_likelihood(x, params)``; they run without gradients and leave the model's mode alone.


def _row_batches(x: Tensor, y: Tensor | None, batch_size: int | None):
    size = x.shape[0] if batch_size is None else batch_size
    for start in range(0, x.shape[0], size):
        yield x[start : start + size], None if y is None else y[start : start + size]


@torch.no_grad()
def elbo(model, x: Tensor, y: Tensor | None = None, *, num_samples: int = 1, batch_size: int | None = 1000) -> Tensor:
    """Per-datapoint ELBO in nats (beta = 1, closed-form KL), ``[num_rows]``.

    Args:
        model: a VAE-like model with ``elbo(x, y, num_samples)``.
        x (Tensor): data, ``[num_rows, input_dim]``.
        y (Tensor, optional): labels for a conditional model, ``[num_rows]``.
        num_samples (int): reconstruction samples per datapoint (default: 1).
        batch_size (int, optional): rows per forward pass; ``None`` = all at once.
    """
    return torch.cat([model.elbo(xb, yb, num_samples=num_samples) for xb, yb in _row_batches(x, y, batch_size)])


@torch.no_grad()
def importance_weighted_log_likelihood(
    model,
    x: Tensor,
    y: Tensor | None = None,
    *,
    num_samples: int = 5000,
    chunk: int = 500,
    batch_size: int | None = 100,
    progress: bool = False,
    rows: int | None = None,
    workers: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance-sampled estimate of log p(x) in nats, ``[num_rows]`` (AEVB App. D;
    Burda et al., https://arxiv.org/abs/1509.00519):

    .. math::
        \\log p(x) \\approx \\log \\frac{1}{K} \\sum_{k=1}^K
        \\frac{p(x|z_k)\\, p(z_k)}{q(z_k|x)}, \\quad z_k \\sim q(z|x).

    With ``K = 1`` this is the single-sample ELBO with a Monte Carlo KL; for ``K > 1`` it
    is a tighter lower bound in expectation. Computed by :func:`vgae_toolkit.ops.iw.iw_log_likelihood`:
    each batch is encoded once and its draws are those of ``encode(x).rsample(chunk)`` repeated
    (the same seed gives the same estimate; ``rows`` and ``workers`` change only the rounding); the decoder runs
    on cache-sized tiles, in ``workers`` threads on the CPU.

    Args:
        model: a VAE-like model (``encode``, ``decode``, ``log_likelihood``).
        x (Tensor): data, ``[num_rows, input_dim]``.
        y (Tensor, optional): labels for a conditional model, ``[num_rows]``.
        num_samples (int): importance samples K per datapoint (default: 5000).
        chunk (int): samples drawn at once; memory grows as ``chunk * batch_size * latent``.
        batch_size (int, optional): rows per pass; ``None`` = all at once (default: 100).
        progress (bool): show a tqdm bar over the row batches (default: off). With K = 5000 on
            10,000 MNIST images this is the longest phase of a run.
        rows (int, optional): (sample, row) pairs per decoder call; the cost, not the value.
        workers (int, optional): CPU threads (default: ``torch.get_num_threads()``).
        generator (torch.Generator, optional): source of the draws (default: the global stream).
    """
    from tqdm.auto import tqdm

    from vgae_toolkit.ops.iw import iw_log_likelihood

    bar = tqdm(total=x.shape[0], desc=f"log p(x), K={num_samples}", unit="img", disable=not progress, leave=False)
    try:
        return iw_log_likelihood(model, x, y, num_samples=num_samples, chunk=chunk, batch_size=batch_size, rows=rows,
                                 workers=workers, generator=generator, on_rows=bar.update)
    finally:
        bar.close()


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies with the input (Burda et al.,
    https://arxiv.org/abs/1509.00519): Var_x(E_q[z_j]) > ``threshold``.

    Args:
        mu (Tensor): posterior means over a data set, ``[num_rows, latent]``.
        threshold (float): activity threshold (default: 0.01, as the paper).
    """
    return int((mu.detach().double().var(dim=0, correction=0) > threshold).sum())


def kl_per_dimension(posterior) -> Tensor:
    """KL(q(z_j|x) || N(0, 1)) averaged over the rows of a Posterior, ``[latent]``."""
    return posterior.kl_per_dim().detach().mean(dim=0)


KL_DIM_THRESHOLD = 0.1  # nats: a model with a total KL under 1 nat has at most 9 dimensions above it


def kl_dims(kl_per_dim: Tensor, threshold: float = KL_DIM_THRESHOLD) -> int:
    """Number of latent dimensions whose mean KL(q(z_j|x) || N(0, 1)) exceeds ``threshold`` nats.

    Beside :func:`active_units`, which counts means that vary (and can count 14 of 20 dimensions at a
    total KL of 0.5 nats, early in training), this counts the dimensions that cost nats: the KL of a
    dimension bounds the information it carries about x, so a dimension under 0.1 nats says little.

    Args:
        kl_per_dim (Tensor): :func:`kl_per_dimension`, ``[latent]``.
        threshold (float): nats per dimension (default: :data:`KL_DIM_THRESHOLD`).
    """
    return int((kl_per_dim.detach() > threshold).sum())


# -- Ranking scores of held-out links (OGB's definitions) -----------------------------------


def _ranking_inputs(pos_scores: Tensor, neg_scores: Tensor) -> tuple[Tensor, Tensor]:
    pos, neg = pos_scores.detach().double(), neg_scores.detach().double()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("ranking scores need at least one positive and one negative")
    return pos, neg


def hits_at_k(pos_scores: Tensor, neg_scores: Tensor, k: int) -> float:
    """Hits@K with OGB's definition: the share of positives that score strictly above the K-th
    highest negative (a positive tied with it is a miss).

    Every positive is ranked against the same negatives (the split's fixed negatives). With fewer
    than ``k`` negatives every positive is a hit, as in OGB's evaluator.

    Args:
        pos_scores (Tensor): scores of the positive pairs (any monotone score, e.g. logits), ``[P]``.
        neg_scores (Tensor): scores of the negative pairs, ``[M]``.
        k (int): the cut-off K.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    pos, neg = _ranking_inputs(pos_scores.reshape(-1), neg_scores.reshape(-1))
    if neg.numel() < k:
        return 1.0
    kth = torch.topk(neg, k).values[-1]
    return float((pos > kth).double().mean())


def mrr(pos_scores: Tensor, neg_scores: Tensor) -> float:
    """Mean reciprocal rank with OGB's definition of a rank under ties.

    The rank of a positive among its negatives is ``1 + (optimistic + pessimistic) / 2``, where
    ``optimistic`` counts the negatives scoring strictly above it and ``pessimistic`` those scoring
    at least as high: a tie counts half.

    Args:
        pos_scores (Tensor): scores of the positive pairs, ``[P]``.
        neg_scores (Tensor): the negatives of every positive: ``[M]``, one set shared by all
            positives (the split's fixed negatives: each positive is ranked against all of them),
            or ``[P, M]``, row ``i`` holding the negatives of positive ``i`` (OGB's per-source
            negatives).
    """
    pos, neg = _ranking_inputs(pos_scores.reshape(-1), neg_scores)
    if neg.dim() == 1:
        ordered = torch.sort(neg).values
        total = ordered.numel()
        above = total - torch.searchsorted(ordered, pos, right=True)  # strictly higher negatives
        at_least = total - torch.searchsorted(ordered, pos, right=False)  # higher or tied
    elif neg.dim() == 2 and neg.size(0) == pos.numel():
        above = (neg > pos[:, None]).sum(dim=1)
        at_least = (neg >= pos[:, None]).sum(dim=1)
    else:
        raise ValueError(f"neg_scores must be [M] or [{pos.numel()}, M], got {tuple(neg_scores.shape)}")
    rank = 1.0 + 0.5 * (above.double() + at_least.double())
    return float((1.0 / rank).mean())


HITS_AT = (20, 50, 100)  # the cut-offs recorded for every link run


def ranking_scores(pos_scores: Tensor, neg_scores: Tensor, ks: tuple[int, ...] = HITS_AT) -> dict[str, float]:
    """``{"hits_at_20": ..., "hits_at_50": ..., "hits_at_100": ..., "mrr": ...}`` against shared negatives."""
    out = {f"hits_at_{k}": hits_at_k(pos_scores, neg_scores, k) for k in ks}
    out["mrr"] = mrr(pos_scores, neg_scores.reshape(-1))
    return out


# -- Embeddings judged beyond links: node clustering and a linear probe ----------------------


def _numpy_rows(embeddings: Tensor, labels: Tensor):
    x = embeddings.detach().cpu().double().numpy()
    y = labels.detach().cpu().reshape(-1).long().numpy()
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"embeddings {tuple(embeddings.shape)} and labels {tuple(labels.shape)} do not match")
    return x, y


def clustering_accuracy(labels, clusters) -> float:
    """Accuracy of a clustering under the best one-to-one map of clusters to classes (Hungarian
    matching on the contingency table); invariant to how the clusters are numbered.

    Args:
        labels (array-like): true classes, ``[n]``.
        clusters (array-like): cluster ids, ``[n]``.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    labels, clusters = np.asarray(labels).reshape(-1), np.asarray(clusters).reshape(-1)
    _, y = np.unique(labels, return_inverse=True)
    _, c = np.unique(clusters, return_inverse=True)
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels.size)


def cluster_scores(embeddings: Tensor, labels: Tensor, k: int | None = None, *, restarts: int = 10,
                   seed: int = 0) -> dict[str, float]:
    """Node clustering of embeddings: k-means, then ACC (Hungarian matching), NMI and ARI
    against the classes, as ARGA (Pan et al. 2018) reports them.

    k-means (scikit-learn, k-means++ starts) keeps the best of ``restarts`` runs by inertia.

    Args:
        embeddings (Tensor): e.g. posterior means, ``[n, d]``.
        labels (Tensor): classes, ``[n]``.
        k (int, optional): number of clusters; ``None`` = number of classes.
        restarts (int): k-means initialisations (default: 10).
        seed (int): seeds k-means (default: 0).

    Returns:
        dict: ``{"cluster_acc", "cluster_nmi", "cluster_ari"}``, each in [0, 1] (ARI can be negative).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x, y = _numpy_rows(embeddings, labels)
    k = len(set(y.tolist())) if k is None else k
    clusters = KMeans(n_clusters=k, n_init=restarts, random_state=seed).fit_predict(x)
    return {"cluster_acc": clustering_accuracy(y, clusters),
            "cluster_nmi": float(normalized_mutual_info_score(y, clusters)),
            "cluster_ari": float(adjusted_rand_score(y, clusters))}


def linear_probe(embeddings: Tensor, labels: Tensor, train_mask: Tensor, test_mask: Tensor, *,
                 max_iter: int = 1000) -> float:
    """Test accuracy of a logistic regression (scikit-learn, L2, C = 1) fitted on the training nodes'
    embeddings, centred on the training nodes' mean and divided by their root-mean-square norm.

    One scale for all dimensions, not one per dimension: the probe then depends on the embedding
    only up to rotation, as inner-product scores do (a spectral embedding's basis inside a repeated
    eigenspace is arbitrary).

    Args:
        embeddings (Tensor): frozen node embeddings, ``[n, d]``.
        labels (Tensor): classes, ``[n]``.
        train_mask, test_mask (BoolTensor): the nodes to fit on and to score, ``[n]`` (e.g.
            Planetoid's public split: 20 per class, 1000 test nodes).
        max_iter (int): L-BFGS iterations (default: 1000).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = _numpy_rows(embeddings, labels)
    train, test = train_mask.cpu().bool().numpy(), test_mask.cpu().bool().numpy()
    if not train.any() or not test.any():
        raise ValueError("the linear probe needs training and test nodes")
    x = x - x[train].mean(axis=0)
    x = x / max(float(np.sqrt((x[train] ** 2).sum(axis=1).mean())), 1e-12)
    probe = LogisticRegression(max_iter=max_iter).fit(x[train], y[train])
    return float((probe.predict(x[test]) == y[test]).mean())
