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
