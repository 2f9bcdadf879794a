"""An autoregressive likelihood p(x|z) for the image VAE: a small PixelCNN conditioned on z.

p(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i(x_<i, z))), pixels in raster order (row by row, left to right).
The logits come from masked convolutions (van den Oord et al., Pixel Recurrent Neural Networks,
https://arxiv.org/abs/1601.06759, Sec. 3.4): a 7x7 mask-A layer, which sees only the pixels before the
centre, then 3x3 mask-B layers (the centre too, i.e. features of earlier pixels), each added to its input
(residual), and two 1x1 layers to one logit per pixel. z enters every layer as a per-channel bias, the
global conditioning of the conditional PixelCNN (van den Oord et al., https://arxiv.org/abs/1606.05328).
Training and evaluation are teacher-forced: one pass over the true image gives every conditional at once.

Such a decoder can model the images without z, so the ELBO's KL term may push q(z|x) onto the prior
and the decoder then ignores z: posterior collapse (Bowman et al., https://arxiv.org/abs/1511.06349;
Chen et al., Variational Lossy Autoencoder, https://arxiv.org/abs/1611.02731); experiments/collapse/
shows it and its remedies.

The decoder is ``model.decoder=pixelcnn``. It knows only the number of pixels: images are taken as
``s x s`` when that number is a square (MNIST 28 x 28, digits 8 x 8), otherwise as a single row.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError

CHANNELS = 32  # feature maps of every layer
LAYERS = 3  # 3x3 mask-B layers after the 7x7 mask-A layer
KERNEL_A, KERNEL_B = 7, 3


def image_shape_of(pixels: int) -> tuple[int, int]:
    """``(s, s)`` when ``pixels`` is a square ``s * s``, else ``(1, pixels)``: one row in raster order."""
    side = math.isqrt(pixels)
    return (side, side) if side * side == pixels else (1, pixels)


class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution whose kernel sees only earlier pixels in raster order (van den Oord et al. 2016).

    Mask ``A`` zeroes the centre and everything after it (the first layer: a pixel's logit must not see
    the pixel); mask ``B`` keeps the centre (later layers: the centre holds features of earlier pixels).

    Args:
        in_channels (int), out_channels (int): as :class:`torch.nn.Conv2d`.
        kernel_size (int): odd.
        mask (str): ``"A"`` or ``"B"``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask: str) -> None:
        if mask not in ("A", "B") or kernel_size % 2 == 0:
            raise ValueError(f"a masked convolution needs mask 'A' or 'B' and an odd kernel, got {mask!r}, "
                             f"{kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        keep = torch.ones_like(self.weight)
        keep[:, :, centre, centre + (mask == "B"):] = 0  # the centre row from the centre (A) or after it (B)
        keep[:, :, centre + 1:] = 0  # every row below the centre
        self.register_buffer("mask", keep)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ConditionalPixelCNN(nn.Module):
    """Masked convolutions from a binary image and per-layer biases to one logit per pixel.

    Args:
        channels (int): feature maps of every layer (default: :data:`CHANNELS`).
        num_layers (int): 3x3 mask-B layers (default: :data:`LAYERS`).
    """

    def __init__(self, *, channels: int = CHANNELS, num_layers: int = LAYERS) -> None:
        super().__init__()
        if channels < 1 or num_layers < 0:
            raise ConfigError(f"pixelcnn: channels must be >= 1 and layers >= 0, got {channels} and {num_layers}")
        self.channels, self.num_biases = channels, num_layers + 2
        self.first = MaskedConv2d(1, channels, KERNEL_A, "A")
        self.layers = nn.ModuleList(MaskedConv2d(channels, channels, KERNEL_B, "B") for _ in range(num_layers))
        self.hidden = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, 1, 1)
        # How far a logit looks up, left and right: the farthest earlier pixel it can depend on.
        self.reach = KERNEL_A // 2 + num_layers * (KERNEL_B // 2)

    def forward(self, images: Tensor, biases: Tensor) -> Tensor:
        """Logits ``[rows, H, W]`` of images ``[rows, 1, H, W]`` given biases ``[rows, num_biases * channels]``."""
        b = biases.reshape(-1, self.num_biases, self.channels, 1, 1)  # [rows, layers + 2, C, 1, 1]
        h = torch.relu(self.first(images) + b[:, 0])  # [rows, C, H, W]
        for i, layer in enumerate(self.layers):
            h = h + torch.relu(layer(h) + b[:, i + 1])
        return self.out(torch.relu(self.hidden(h) + b[:, -1]))[:, 0]


class PixelCNNDecoder(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i(x_<i, z))): a :class:`ConditionalPixelCNN` whose layers
    take their biases from z through the decoder body.

    ``forward(z)`` returns the conditioning (the biases of every layer, ``[..., batch, (layers + 2) * channels]``),
    not logits: the logits also need the image, so :meth:`log_likelihood` runs the convolutions on ``x``
    (teacher forcing) for every leading sample of the conditioning.

    Args:
        body (nn.Module): the decoder's MLP layers (``width`` features from z); ``model/encoder=mlp``.
        output_dim (int): pixels per image; a square number is read as a square image.
        channels (int): feature maps of the PixelCNN (default: :data:`CHANNELS`).
        num_layers (int): its 3x3 mask-B layers (default: :data:`LAYERS`).
    """

    def __init__(self, body: nn.Module, *, output_dim: int, channels: int = CHANNELS, num_layers: int = LAYERS) -> None:
        super().__init__()
        if not isinstance(getattr(body, "width", None), int):
            raise ConfigError("model.decoder=pixelcnn conditions on z through MLP layers: use model/encoder=mlp")
        self.body, self.shape, self.output_dim = body, image_shape_of(output_dim), output_dim
        self.net = ConditionalPixelCNN(channels=channels, num_layers=num_layers)
        self.condition = nn.Linear(body.width, self.net.num_biases * channels)

    def forward(self, z: Tensor) -> Tensor:
        return self.condition(self.body(z))  # [..., batch, (layers + 2) * channels]

    def logits(self, x: Tensor, params: Tensor) -> Tensor:
        """Teacher-forced logits of p(x_i = 1 | x_<i, z), ``[..., batch, D]``; ``x`` ``[batch, D]`` broadcasts."""
        lead = params.shape[:-1]
        images = x.expand(*lead, self.output_dim).reshape(-1, 1, *self.shape)  # [rows, 1, H, W]
        out = self.net(images, params.reshape(-1, params.shape[-1]))  # [rows, H, W]
        return out.reshape(*lead, self.output_dim)

    def log_likelihood(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x|z) = sum_i log p(x_i | x_<i, z), ``[..., batch]``; also defined for x in [0, 1]."""
        logits = self.logits(x, params)
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def mean_nll(self, x: Tensor, params: Tensor) -> Tensor:
        """``-log_likelihood(x, params).mean()``."""
        return -self.log_likelihood(x, params).mean()

    @torch.no_grad()
    def mean(self, params: Tensor) -> Tensor:
        """One image drawn pixel by pixel, shown as its probabilities: ``[..., batch, D]``.

        Pixel i is drawn from p(x_i | x_<i, z) given the pixels drawn before it (the global random
        stream); the value returned for it is that probability, not the 0/1 draw, so the picture is the
        chain of conditionals along one sample. Each step runs the network on the window of rows and
        columns a logit can see (:attr:`ConditionalPixelCNN.reach`), which gives the same logit as the
        whole image.
        """
        lead, (height, width), reach = params.shape[:-1], self.shape, self.net.reach
        biases = params.reshape(-1, params.shape[-1])
        x = biases.new_zeros(biases.shape[0], 1, height, width)
        probs = biases.new_zeros(biases.shape[0], height, width)
        for r in range(height):
            top = max(0, r - reach)
            for c in range(width):
                left, right = max(0, c - reach), min(width, c + reach + 1)
                logit = self.net(x[:, :, top:r + 1, left:right], biases)[:, r - top, c - left]  # [rows]
                probs[:, r, c] = torch.sigmoid(logit)
                x[:, 0, r, c] = torch.bernoulli(probs[:, r, c])
        return probs.reshape(*lead, self.output_dim)
