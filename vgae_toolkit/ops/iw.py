"""The importance-weighted estimate of log p(x) (Burda et al., https://arxiv.org/abs/1509.00519) in tiles.

Per row batch, the encoder runs once; the K samples z ~ q(z|x) are drawn ``chunk`` at a time, exactly as
``Posterior.rsample(chunk)`` draws them, and the decoder runs on tiles of about ``rows`` (sample, image)
pairs, small enough that its output stays in cache while the likelihood reads it. The log-weights of a
chunk are reduced by one ``logsumexp`` and the chunks are joined by ``logaddexp``, so memory does not
grow with K; on the CPU the chunks are spread over worker threads. The model is used only through
``encode``, ``decode`` and ``log_likelihood``; where its likelihood is the Bernoulli one on logits
(checked on the first batch, :func:`likelihood_of`), the same sum is computed by
:func:`bernoulli_log_likelihood` in fewer passes over the logits.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import torch
from torch import Tensor

from vgae_toolkit.models.latent import MAX_LOGSTD

ROWS = 1024  # (sample, image) pairs per decoder call on the CPU: 1024 x 784 float logits are 3.2 MB
DEVICE_ROWS = 1 << 16  # the same on an accelerator, where one large call beats many small ones
MAX_GROUP = 100  # factors in (1, 2] per product: 2^100 is within float32's range (2^128)


def _group_size(width: int) -> int:
    """The largest divisor of ``width`` that is at most :data:`MAX_GROUP`."""
    return max(g for g in range(1, min(width, MAX_GROUP) + 1) if width % g == 0)


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """sum_d x_d l_d - softplus(l_d), the value of ``BernoulliDecoder.log_likelihood``: ``[..., batch]``.

    Uses softplus(l) = (l + |l|) / 2 + log(1 + exp(-|l|)): one ``exp`` per element, and the logarithms
    summed as the log of products over groups of pixels (each factor lies in (1, 2], so a group of
    :data:`MAX_GROUP` cannot overflow), so one ``log`` per group instead of one ``log1p`` per pixel.

    Args:
        x (Tensor): targets in [0, 1], ``[batch, D]``.
        logits (Tensor): ``[..., batch, D]``; leading sample dimensions broadcast against ``x``.
    """
    width = logits.shape[-1]
    x_dot_l = torch.einsum("...bd,bd->...b", logits, x)
    buf = logits.abs()
    relu_sum = 0.5 * (logits.sum(-1) + buf.sum(-1))  # sum_d max(l_d, 0)
    buf.neg_().exp_().add_(1.0)  # 1 + exp(-|l|), in (1, 2]
    group = _group_size(width)
    log_terms = buf.reshape(*buf.shape[:-1], width // group, group).prod(-1).log_().sum(-1)
    return x_dot_l - relu_sum - log_terms


def likelihood_of(model, x: Tensor, y: Tensor | None, mu: Tensor) -> Callable[[Tensor, object], Tensor]:
    """``model.log_likelihood``, or :func:`bernoulli_log_likelihood` where that computes the same value.

    The fast sum is taken only when the decoder returns one float tensor of the data's width (logits)
    and, at z = mu on the rows given, it reproduces ``model.log_likelihood`` to within rounding (1e-5
    relative, 1e-3 nats); any other likelihood (Gaussian, continuous Bernoulli, ...) runs the model's own.

    Args:
        x (Tensor): a row batch, ``[batch, D]``; ``y`` its labels for a conditional model.
        mu (Tensor): its posterior means, ``[batch, latent]``.
    """
    params = model.decode(mu.unsqueeze(0), y)  # [1, batch, D] for a Bernoulli decoder
    if not (isinstance(params, Tensor) and params.dtype in (torch.float32, torch.float64)
            and params.shape == (1, *x.shape)):
        return model.log_likelihood
    expected = model.log_likelihood(x, params)
    fast = bernoulli_log_likelihood(x, params)
    if expected.shape == fast.shape and torch.allclose(fast, expected, rtol=1e-5, atol=1e-3):
        return bernoulli_log_likelihood
    return model.log_likelihood


def chunk_log_sum(model, x: Tensor, y: Tensor | None, mu: Tensor, logstd: Tensor, eps: Tensor, *, rows: int,
                  log_lik: Callable[[Tensor, object], Tensor]) -> Tensor:
    """log sum_k p(x|z_k) p(z_k) / q(z_k|x) over one chunk of draws z_k = mu + sigma eps_k: ``[batch]``.

    Args:
        mu, logstd (Tensor): the posterior, ``logstd`` clamped as ``Posterior`` clamps it, ``[batch, latent]``.
        eps (Tensor): standard normal draws, ``[chunk, batch, latent]``.
        rows (int): (sample, image) pairs per decoder call.
        log_lik: ``(x, decoder params) -> [..., batch]``, e.g. ``model.log_likelihood``.
    """
    with torch.no_grad():  # grad mode is per thread: a worker starts with it on
        z = mu + logstd.exp() * eps  # [chunk, batch, latent], as Posterior.rsample
        # log p(z) - log q(z|x) = sum_j (eps_j^2 - z_j^2) / 2 + log sigma_j: the 2 pi terms cancel.
        log_w = (eps.square() - z.square()).sum(-1).mul_(0.5).add_(logstd.sum(-1))  # [chunk, batch]
        step = max(1, rows // max(1, mu.shape[0]))  # samples per decoder call
        for s in range(0, z.shape[0], step):
            log_w[s : s + step] += log_lik(x, model.decode(z[s : s + step], y))
        return torch.logsumexp(log_w, dim=0)


def _in_order(jobs: Iterator[Callable[[], Tensor]], workers: int | None) -> Iterator[Tensor]:
    """Results of ``jobs`` in their order; the jobs are pulled from the iterator in this thread.

    ``workers=None`` runs them here with the operators' own threading (an accelerator). Otherwise
    ``workers`` threads run them, at most ``2 * workers`` ahead of the result being yielded, with
    single-threaded operators: small products split over threads would wait at every barrier for a
    thread the OS has descheduled, which on shared cores costs more than the split gains.
    """
    if workers is None:
        for job in jobs:
            yield job()
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="iw") if workers > 1 else None
    try:
        if pool is None:
            for job in jobs:
                yield job()
            return
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


@torch.no_grad()
def iw_log_likelihood(
    model,
    x: Tensor,
    y: Tensor | None = None,
    *,
    num_samples: int,
    chunk: int = 500,
    batch_size: int | None = 100,
    rows: int | None = None,
    workers: int | None = None,
    generator: torch.Generator | None = None,
    on_rows: Callable[[int], object] | None = None,
) -> Tensor:
    """log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), per row of ``x``: ``[num_rows]``.

    The row batches are encoded and their normal draws made in this thread, in the order of a loop over
    batches and chunks calling ``Posterior.rsample(chunk)``, so the estimate depends on the random stream
    (or ``generator``) and the arguments; ``rows`` and ``workers`` change only the rounding. Chunks are evaluated by
    ``workers`` threads running single-threaded operators (CPU), or one after another (other devices).

    Args:
        model: a VAE-like model (``encode`` returning a Gaussian ``Posterior``, ``decode``, ``log_likelihood``).
        x (Tensor): data, ``[num_rows, input_dim]``.
        y (Tensor, optional): labels for a conditional model, ``[num_rows]``.
        num_samples (int): importance samples K per row.
        chunk (int): samples drawn at once, ``[chunk, batch_size, latent]`` (default: 500).
        batch_size (int, optional): rows encoded at once; ``None`` = all (default: 100).
        rows (int, optional): (sample, image) pairs per decoder call (default: :data:`ROWS` on the CPU,
            :data:`DEVICE_ROWS` elsewhere).
        workers (int, optional): threads evaluating chunks on the CPU (default: ``torch.get_num_threads()``);
            while they run, operators use one thread each. Ignored on other devices.
        generator (torch.Generator, optional): source of the normal draws (default: the global one).
        on_rows (callable, optional): called with the number of rows of each finished batch (a progress bar).
    """
    if num_samples < 1 or chunk < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"num_samples, chunk and batch_size must be >= 1, got {num_samples}, {chunk}, {batch_size}")
    cpu = x.device.type == "cpu"
    rows = rows if rows is not None else ROWS if cpu else DEVICE_ROWS
    size = x.shape[0] if batch_size is None else batch_size
    starts = range(0, x.shape[0], max(size, 1))
    draws = [min(chunk, num_samples - c) for c in range(0, num_samples, chunk)]  # samples per chunk
    if cpu:
        workers = max(1, min(torch.get_num_threads() if workers is None else workers, len(starts) * len(draws)))
    else:
        workers = None

    def jobs() -> Iterator[Callable[[], Tensor]]:
        log_lik = None
        for start in starts:
            xb, yb = x[start : start + size], None if y is None else y[start : start + size]
            posterior = model.encode(xb, yb)
            if posterior.logstd is None:
                raise ValueError("a deterministic posterior has no density: the importance-weighted estimate "
                                 "needs q(z|x)")
            log_lik = log_lik or likelihood_of(model, xb, yb, posterior.mu)  # chosen on the first batch
            logstd = posterior.logstd.clamp(max=MAX_LOGSTD)  # as Posterior.std and Posterior.log_prob clamp it
            for n in draws:
                eps = torch.randn((n, *posterior.mu.shape), generator=generator, dtype=posterior.mu.dtype,
                                  device=posterior.mu.device)
                yield partial(chunk_log_sum, model, xb, yb, posterior.mu, logstd, eps, rows=rows, log_lik=log_lik)

    parts = _in_order(jobs(), workers)
    out = []
    try:
        for _ in starts:
            total = None  # running logsumexp over the chunks so far, [batch]
            for _ in draws:
                part = next(parts)
                total = part if total is None else torch.logaddexp(total, part)
            out.append(total - math.log(num_samples))
            if on_rows is not None:
                on_rows(out[-1].shape[0])
    finally:
        parts.close()  # stops the workers and restores the thread count, also on an error
    return torch.cat(out) if out else x.new_zeros(0)
