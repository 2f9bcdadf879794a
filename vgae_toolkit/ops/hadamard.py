"""The Hadamard-MLP edge decoder  w2 · relu(W1 dropout(z_i * z_j) + b1) + b2  as one autograd node.

Autograd through ``index_select``, ``Dropout`` and two ``Linear`` layers materialises several
``[P, d]`` tensors per step (gathered rows, their product, the dropout mask and its product, their
gradients): on PubMed's masked edges and negatives about 117,000 x 128 floats, 60 MB each, streamed
through memory a dozen times. Here the pairs go through in chunks small enough to stay in cache; the
forward pass keeps only the hidden activations ``[P, h]`` and the dropout mask (one byte per
entry), and the backward pass gathers the rows again.

The dropout mask keeps each entry with probability ``1 - p`` from 32 random bits per entry (drawn as
64-bit words, two entries per word), a few times cheaper than ``bernoulli_`` on the CPU; the kept
probability differs from ``1 - p`` by less than 2^-32. Tested against autograd through the layers.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

CHUNK = 2048  # pairs per chunk on the CPU: a [chunk, 128] float block is 1 MB


def keep_mask(rows: int, cols: int, keep: float, device: torch.device | str = "cpu",
              out: Tensor | None = None) -> Tensor:
    """A ``[rows, cols]`` bool tensor (or ``out``), each entry true (kept) with probability ``keep``
    (to within 2^-32)."""
    count = rows * cols
    out = torch.empty(rows, cols, dtype=torch.bool, device=device) if out is None else out
    threshold = round(keep * (1 << 32)) - (1 << 31)  # int32 draws below it: probability keep
    if threshold >= 1 << 31:  # keep = 1 (the threshold is past every int32)
        return out.fill_(True)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((count + 1) // 2,), dtype=torch.int64, device=device)
    return torch.lt(words.view(torch.int32)[:count].view(rows, cols), threshold, out=out)


def _multiplier(mask: Tensor, dtype: torch.dtype) -> Tensor:
    # bool -> float through uint8 (the same bytes): several times faster than multiplying by the bool
    return mask.view(torch.uint8).to(dtype)


def _spans(size: int, device: torch.device) -> list[slice]:
    """Chunks of pairs: cache-sized on the CPU, all at once on an accelerator."""
    step = CHUNK if device.type == "cpu" else max(size, 1)
    return [slice(a, a + step) for a in range(0, size, step)]


class _HadamardMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, pairs: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                mask: Tensor | None, keep: float | None) -> Tensor:
        num = pairs.size(1)
        draw = keep is not None and mask is None
        if draw:  # drawn chunk by chunk below, while the chunk is in cache
            mask = torch.empty(num, z.size(1), dtype=torch.bool, device=z.device)
        scale = 1.0 if keep is None else 1.0 / keep
        out = z.new_empty(num)
        hidden = z.new_empty(num, w1.size(0)) if any(ctx.needs_input_grad) else None  # kept for backward
        w1_t, w2_row = w1.t(), w2[0]
        for c in _spans(num, z.device):
            i, j = pairs[0, c], pairs[1, c]
            x = z.index_select(0, i).mul_(z.index_select(0, j))  # [chunk, d]
            if keep is not None:
                if draw:
                    keep_mask(x.size(0), x.size(1), keep, out=mask[c])
                x.mul_(_multiplier(mask[c], x.dtype))
            h = torch.addmm(b1, x, w1_t, alpha=scale)  # [chunk, h]
            h.clamp_min_(0)  # the ReLU
            if hidden is not None:
                hidden[c] = h
            torch.addmv(b2, h, w2_row, out=out[c])
        ctx.save_for_backward(z, pairs, w1, w2, hidden, mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, pairs, w1, w2, hidden, mask = ctx.saved_tensors
        scale = ctx.scale
        grad_z = torch.zeros_like(z) if ctx.needs_input_grad[0] else None
        grad_w1, grad_b1 = torch.zeros_like(w1), w1.new_zeros(w1.size(0))
        grad_w2, grad_b2 = torch.zeros_like(w2), grad.sum().reshape(1)
        w2_row, w1_scaled = w2[0], w1 * scale
        for c in _spans(pairs.size(1), z.device):
            i, j, g = pairs[0, c], pairs[1, c], grad[c]
            r = hidden[c]  # relu(W1 x + b1)
            grad_w2[0].addmv_(r.t(), g)
            gh = torch.ops.aten.threshold_backward(torch.outer(g, w2_row), r, 0)  # [chunk, h]: w2, then the ReLU
            grad_b1.add_(gh.sum(0))
            zi, zj = z.index_select(0, i), z.index_select(0, j)
            x = zi * zj
            keep = None if mask is None else _multiplier(mask[c], x.dtype)
            if keep is not None:
                x.mul_(keep)
            grad_w1.addmm_(gh.t(), x, alpha=scale)
            if grad_z is not None:
                gx = torch.mm(gh, w1_scaled)  # [chunk, d]
                if keep is not None:
                    gx.mul_(keep)
                grad_z.index_add_(0, i, zj.mul_(gx))
                grad_z.index_add_(0, j, zi.mul_(gx))
        return grad_z, None, grad_w1, grad_b1, grad_w2, grad_b2, None, None


def hadamard_mlp(z: Tensor, pairs: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                 dropout: float = 0.0, training: bool = False, mask: Tensor | None = None) -> Tensor:
    """Logits ``w2 · relu(W1 dropout(z_i * z_j) + b1) + b2`` of ``pairs`` ``[2, P]``: ``[P]``.

    Args:
        z (Tensor): node codes ``[N, d]``.
        w1, b1 (Tensor): the hidden layer, ``[h, d]`` and ``[h]`` (as ``nn.Linear`` keeps them).
        w2, b2 (Tensor): the output layer, ``[1, h]`` and ``[1]``.
        dropout (float): dropout probability on the product, applied when ``training``.
        mask (Tensor, optional): the dropout's mask ``[P, d]`` (bool), true where kept; drawn here when not given.
    """
    drop = training and dropout > 0
    return _HadamardMLP.apply(z, pairs, w1, b1, w2, b2, mask if drop else None, 1.0 - dropout if drop else None)


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` with its mask from :func:`keep_mask`: the same distribution (to within 2^-32) at a
    fraction of ``bernoulli_``'s cost on the CPU; no parameters, so state dicts are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = keep_mask(x.numel() // max(x.size(-1), 1), x.size(-1), 1.0 - self.p, x.device).view(x.shape)
        multiplier = _multiplier(keep, x.dtype)
        return x * (multiplier.mul_(1.0 / (1.0 - self.p)) if self.p < 1 else multiplier)
