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
