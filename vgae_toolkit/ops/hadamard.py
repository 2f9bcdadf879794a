"""The Hadamard-MLP edge decoder  w2 · relu(W1 dropout(z_i * z_j) + b1) + b2  as one autograd node.

Autograd through ``index_select``, ``Dropout`` and two ``Linear`` layers materialises several
``[P, d]`` tensors per step (gathered rows, their product, the dropout mask and its product, their
gradients): on PubMed's masked edges and negatives about 117,000 x 128 floats, 60 MB each, streamed
through memory a dozen times. Here the pairs go through in chunks small enough to stay in cache; the
forward pass keeps only the hidden activations ``[P, h]`` and the dropout mask (one byte per
entry), and the backward pass gathers the rows again.

The dropout mask comes from :func:`vgae_toolkit.ops.dropout.keep_mask`. Tested against autograd through
the layers.

S2GAE's cross-layer decoder (:func:`cross_layer_mlp`) goes through the same way: the K^2 products of a
chunk's layer codes are formed in cache, and only the hidden activations are kept for the backward pass.
"""
from __future__ import annotations

import torch
from torch import Tensor

from vgae_toolkit.ops.dropout import keep_mask, multiplier

CHUNK = 2048  # pairs per chunk and thread on the CPU: a [chunk, 128] float block is 1 MB


def _spans(size: int, device: torch.device, width: int = 128) -> list[slice]:
    """Chunks of pairs: cache-sized on the CPU (``CHUNK`` pairs of 128 floats per thread, each thread taking
    its share of a chunk's rows; fewer of wider rows), all at once on an accelerator."""
    if device.type != "cpu":
        return [slice(0, size)] if size else []
    step = max(1, CHUNK * torch.get_num_threads() * 128 // max(width, 128))
    return [slice(a, a + step) for a in range(0, size, step)]


def _longest(spans: list[slice]) -> int:
    return spans[0].stop - spans[0].start if spans else 0


class _HadamardMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, pairs: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                mask: Tensor | None, keep: float | None, record: bool) -> Tensor:
        num = pairs.size(1)
        draw = keep is not None and mask is None
        if draw:  # drawn chunk by chunk below, while the chunk is in cache
            mask = torch.empty(num, z.size(1), dtype=torch.bool, device=z.device)
        scale = 1.0 if keep is None else 1.0 / keep
        out = z.new_empty(num)
        hidden = z.new_empty(num, w1.size(0)) if record else None  # kept for the backward pass
        w1_t, w2_row = w1.t(), w2[0]
        spans = _spans(num, z.device)
        # the chunks' workspace, allocated once: the rows of i (then their product with those of j), the
        # rows of j, the dropout's 0/1 factors
        work = z.new_empty(3 if keep is not None else 2, _longest(spans), z.size(1))
        for c in spans:
            i, j = pairs[0, c], pairs[1, c]
            n = i.size(0)
            x, y, factor = work[0, :n], work[1, :n], work[-1, :n]
            torch.index_select(z, 0, i, out=x).mul_(torch.index_select(z, 0, j, out=y))
            if keep is not None:
                if draw:
                    keep_mask(n, x.size(1), keep, out=mask[c])
                x.mul_(multiplier(mask[c], x.dtype, out=factor))
            h = torch.addmm(b1, x, w1_t, alpha=scale, out=None if hidden is None else hidden[c])  # [chunk, h]
            h.clamp_min_(0)  # the ReLU
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
        spans = _spans(pairs.size(1), z.device)
        # the chunks' workspace, allocated once: the rows of j, then of i, gathered where the gradients of
        # the rows of i, then of j, go (one scatter); their product; the dropout's 0/1 factors
        longest = _longest(spans)
        gathered, work = z.new_empty(2 * longest, z.size(1)), z.new_empty(2, longest, z.size(1))
        for c in spans:
            i, j, g = pairs[0, c], pairs[1, c], grad[c]
            n = g.size(0)
            r = hidden[c]  # relu(W1 x + b1)
            grad_w2[0].addmv_(r.t(), g)
            gh = torch.ops.aten.threshold_backward(torch.outer(g, w2_row), r, 0)  # [chunk, h]: w2, then the ReLU
            grad_b1.add_(gh.sum(0))
            both = gathered[: 2 * n]
            zj, zi = torch.index_select(z, 0, j, out=both[:n]), torch.index_select(z, 0, i, out=both[n:])
            x = torch.mul(zi, zj, out=work[0, :n])
            keep = None if mask is None else multiplier(mask[c], x.dtype, out=work[1, :n])
            if keep is not None:
                x.mul_(keep)
            grad_w1.addmm_(gh.t(), x, alpha=scale)
            if grad_z is not None:
                gx = torch.mm(gh, w1_scaled)  # [chunk, d]
                if keep is not None:
                    gx.mul_(keep)
                both.view(2, n, -1).mul_(gx)  # in place: z_j * gx for the rows of i, z_i * gx for those of j
                grad_z.index_add_(0, pairs[:, c].reshape(-1), both)
        return grad_z, None, grad_w1, grad_b1, grad_w2, grad_b2, None, None, None


def _recording(*tensors: Tensor) -> bool:
    """Whether autograd records a node for these inputs (not under ``no_grad``, some input requiring a
    gradient): only then does a kernel keep activations for a backward pass."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


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
    return _HadamardMLP.apply(z, pairs, w1, b1, w2, b2, mask if drop else None, 1.0 - dropout if drop else None,
                              _recording(z, w1, b1, w2, b2))


class _CrossLayerMLP(torch.autograd.Function):
    """S2GAE's decoder with one hidden layer: ``w2 · dropout(relu(W1 x + b1)) + b2`` on the K^2 products
    ``x = [h_i^(k) * h_j^(l)]_(k, l)`` of the stacked layer codes ``[N, K, d]``, chunk by chunk.

    The forward pass keeps only the hidden activations with the dropped entries zeroed ``[P, h]`` (the
    dropout's scale is applied in the output layer): where an entry is positive, it was kept and its ReLU
    was active, so the backward pass needs no separate mask."""

    @staticmethod
    def forward(ctx, codes: Tensor, pairs: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                mask: Tensor | None, keep: float | None, record: bool) -> Tensor:
        num, layers = pairs.size(1), codes.size(1)
        scale = 1.0 if keep is None else 1.0 / keep
        out = codes.new_empty(num)
        hidden = codes.new_empty(num, w1.size(0)) if record else None
        w1_t, w2_row = w1.t(), w2[0]
        spans = _spans(num, codes.device, w1.size(1))
        if keep is not None:  # the dropout's workspace, allocated once: a drawn chunk's mask, its 0/1 factors
            drawn = torch.empty(_longest(spans), w1.size(0), dtype=torch.bool, device=codes.device)
            factor = codes.new_empty(_longest(spans), w1.size(0))
        for c in spans:
            a, b = codes.index_select(0, pairs[0, c]), codes.index_select(0, pairs[1, c])  # [chunk, K, d]
            x = (a.unsqueeze(2) * b.unsqueeze(1)).flatten(1)  # [chunk, K * K * d], k-major
            h = torch.addmm(b1, x, w1_t, out=None if hidden is None else hidden[c]).clamp_min_(0)
            if keep is not None:
                n = h.size(0)
                m = keep_mask(n, h.size(1), keep, out=drawn[:n]) if mask is None else mask[c]
                h.mul_(multiplier(m, h.dtype, out=factor[:n]))
            torch.addmv(b2, h, w2_row, alpha=scale, out=out[c])  # the dropout's scale
        ctx.save_for_backward(codes, pairs, w1, w2, hidden)
        ctx.layers, ctx.scale = layers, scale
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        codes, pairs, w1, w2, hidden = ctx.saved_tensors
        layers = ctx.layers
        grad_codes = torch.zeros_like(codes) if ctx.needs_input_grad[0] else None
        grad_w1, grad_b1 = torch.zeros_like(w1), w1.new_zeros(w1.size(0))
        grad_w2, grad_b2 = torch.zeros_like(w2), grad.sum().reshape(1)
        w2_scaled = w2[0] * ctx.scale  # the dropout's scale, where an entry was kept
        for c in _spans(pairs.size(1), codes.device, w1.size(1)):
            i, j, g = pairs[0, c], pairs[1, c], grad[c]
            r = hidden[c]  # relu(W1 x + b1) where kept, else 0: positive exactly where kept and active
            grad_w2[0].addmv_(r.t(), g, alpha=ctx.scale)
            gh = torch.ops.aten.threshold_backward(torch.outer(g, w2_scaled), r, 0)  # [chunk, h]: w2, mask, ReLU
            grad_b1.add_(gh.sum(0))
            a, b = codes.index_select(0, i), codes.index_select(0, j)  # [chunk, K, d]
            x = (a.unsqueeze(2) * b.unsqueeze(1)).flatten(1)
            grad_w1.addmm_(gh.t(), x)
            if grad_codes is not None:
                n = g.size(0)
                gx = torch.mm(gh, w1).view(n, layers, layers, codes.size(2))  # [chunk, K, K, d]
                both = codes.new_empty(2 * n, layers, codes.size(2))  # the rows of i, then of j: one scatter
                gi, gj = both[:n], both[n:]
                # K multiply-adds each (a reduction over a broadcast product costs twice as much)
                torch.mul(gx[:, :, 0], b[:, None, 0], out=gi)  # sum over l of g_(k, l) * h_j^(l)
                torch.mul(gx[:, 0], a[:, 0, None], out=gj)  # sum over k of g_(k, l) * h_i^(k)
                for k in range(1, layers):
                    gi.addcmul_(gx[:, :, k], b[:, None, k])
                    gj.addcmul_(gx[:, k], a[:, k, None])
                grad_codes.index_add_(0, pairs[:, c].reshape(-1), both)
        return grad_codes, None, grad_w1, grad_b1, grad_w2, grad_b2, None, None, None


def cross_layer_mlp(codes: Tensor, pairs: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                    dropout: float = 0.0, training: bool = False, mask: Tensor | None = None) -> Tensor:
    """Logits ``w2 · dropout(relu(W1 x + b1)) + b2`` of ``pairs`` ``[2, P]``, ``x`` the K^2 products
    ``h_i^(k) * h_j^(l)`` (k-major) of the layer codes ``codes`` ``[N, K, d]``: ``[P]`` (S2GAE's decoder
    with one hidden layer).

    Args:
        w1, b1 (Tensor): the hidden layer, ``[h, K * K * d]`` and ``[h]``.
        w2, b2 (Tensor): the output layer, ``[1, h]`` and ``[1]``.
        dropout (float): dropout probability after the hidden layer's ReLU, applied when ``training``.
        mask (Tensor, optional): that dropout's mask ``[P, h]`` (bool), true where kept; drawn here when not given.
    """
    drop = training and dropout > 0
    return _CrossLayerMLP.apply(codes, pairs, w1, b1, w2, b2, mask if drop else None,
                                1.0 - dropout if drop else None, _recording(codes, w1, b1, w2, b2))
