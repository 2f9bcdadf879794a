"""Image grids of samples, reconstructions and latent-space manifolds (as in AEVB's figures).

Written with matplotlib's object API on the Agg canvas (no pyplot global state, no torchvision),
so the PNG's pixel size is exact: a grid of ``rows x nrow`` images of ``H x W`` pixels with
``padding`` pixels between and around them is ``rows * (H + padding) + padding`` pixels tall and
``nrow * (W + padding) + padding`` wide, times the integer ``scale``, plus ``TITLE_PX`` rows on top
when there is a title.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# Height of the band above the grid that holds the title, in output pixels.
TITLE_PX = 24


def image_grid(images: Tensor | np.ndarray, shape: tuple[int, int], nrow: int, padding: int = 1,
               pad_value: float = 1.0) -> np.ndarray:
    """Tiles greyscale images into one array, row by row.

    Args:
        images (Tensor or np.ndarray): ``n`` images, ``[n, H * W]`` or ``[n, H, W]``, values in [0, 1].
        shape (tuple[int, int]): image height and width ``(H, W)``.
        nrow (int): images per grid row; the grid has ``ceil(n / nrow)`` rows.
        padding (int, optional): pixels between and around the images. (default: ``1``)
        pad_value (float, optional): intensity of the padding and of empty cells; white
            separates MNIST's black backgrounds. (default: ``1.0``)

    Returns:
        A float32 array ``[rows * (H + padding) + padding, nrow * (W + padding) + padding]``
        with values clipped to [0, 1].
    """
    if isinstance(images, Tensor):
        images = images.detach().to("cpu", torch.float32).numpy()
    h, w = shape
    n = len(images)
    if n == 0 or nrow < 1 or padding < 0:
        raise ValueError(f"need at least one image, nrow >= 1 and padding >= 0 (got {n}, {nrow}, {padding})")
    if images[0].size != h * w:
        raise ValueError(f"images of {images[0].size} values do not have shape {shape}")
    images = np.clip(np.asarray(images, dtype=np.float32).reshape(n, h, w), 0.0, 1.0)
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, np.float32)
    for i, image in enumerate(images):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def save_image_grid(images: Tensor | np.ndarray, shape: tuple[int, int], path: str | Path, nrow: int,
                    title: str | None = None, scale: int = 2, padding: int = 1) -> Path:
    """Writes :func:`image_grid` as a greyscale PNG, each pixel enlarged to ``scale x scale``.

    Args:
        images (Tensor or np.ndarray): ``[n, H * W]`` or ``[n, H, W]`` values in [0, 1].
        shape (tuple[int, int]): image height and width ``(H, W)``.
        path (str or Path): output file; parent folders are created.
        nrow (int): images per grid row.
        title (str, optional): text in a ``TITLE_PX`` band above the grid. (default: ``None``)
        scale (int, optional): integer upscale factor, keeping pixels sharp. (default: ``2``)
        padding (int, optional): pixels between and around the images. (default: ``1``)

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    grid = image_grid(images, shape, nrow, padding=padding)
    grid = np.kron(grid, np.ones((scale, scale), np.float32))  # nearest-neighbour upscale
    height, width = grid.shape
    band = TITLE_PX if title else 0
    dpi = 100
    fig = Figure(figsize=(width / dpi, (height + band) / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    # figimage places array pixels one-to-one on the canvas, with no resampling or axes.
    fig.figimage(grid, xo=0, yo=0, cmap="gray", vmin=0.0, vmax=1.0, origin="upper", resize=False)
    if title:
        fig.text(0.5, 1.0 - 0.5 * band / (height + band), title, ha="center", va="center", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
