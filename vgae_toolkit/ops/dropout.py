"""Dropout masks from cheap random bits.

``bernoulli_`` on the CPU draws a double per entry; a dropout mask needs far less. :func:`keep_mask` compares
16-bit lanes of random 64-bit words with a threshold, four entries per word, several times cheaper; the kept
probability differs from the asked one by at most 2^-15.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def keep_mask(rows: int, cols: int, keep: float, device: torch.device | str = "cpu",
              out: Tensor | None = None) -> Tensor:
    """A ``[rows, cols]`` bool tensor (or ``out``), each entry true (kept) with probability ``keep``
    (to within 2^-15)."""
    count = rows * cols
    out = torch.empty(rows, cols, dtype=torch.bool, device=device) if out is None else out
    threshold = round(keep * (1 << 16)) - (1 << 15)  # int16 draws below it: probability keep
    if threshold >= 1 << 15 or threshold <= -(1 << 15):  # keep = 1 or 0: past every int16 or below
        return out.fill_(threshold > 0)
    # random_() fills an int64 with 63 random bits (the sign bit is 0) at half the cost of a full-range
    # randint; shifted left by one, the four int16 lanes of a word hold 16, 16, 16 and (the lowest,
    # its last bit 0) 15 random bits
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_().bitwise_left_shift_(1)
    lanes = words.view(torch.int16)[:count].view(rows, cols)
    # draw < threshold as integer arithmetic, several times faster than a comparison on the CPU:
    # clamped to [threshold - 1, threshold], threshold minus the draw is 1 where it was below, else 0
    ones = torch.rsub(lanes.clamp_(threshold - 1, threshold), threshold)
    out.view(torch.uint8).copy_(ones)  # 0/1 bytes: the bool
    return out


def multiplier(mask: Tensor, dtype: torch.dtype, out: Tensor | None = None) -> Tensor:
    """A bool mask as 0/1 of ``dtype`` (in ``out`` if given), through uint8 (the same bytes): several
    times faster than multiplying by the bool."""
    return mask.view(torch.uint8).to(dtype) if out is None else out.copy_(mask.view(torch.uint8))


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` with its mask from :func:`keep_mask`: the same distribution (to within 2^-15) at a
    fraction of ``bernoulli_``'s cost on the CPU; no parameters, so state dicts are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = keep_mask(x.numel() // max(x.size(-1), 1), x.size(-1), 1.0 - self.p, x.device).view(x.shape)
        factor = multiplier(keep, x.dtype)
        return x * (factor.mul_(1.0 / (1.0 - self.p)) if self.p < 1 else factor)
