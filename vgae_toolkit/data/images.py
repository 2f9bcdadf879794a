"""Image datasets for the VAE (Kingma & Welling, AEVB, https://arxiv.org/abs/1312.6114).

Every loader reads local files only (nothing is downloaded) and returns an :class:`ImageData`
with flattened float32 images in [0, 1]. The expected layout under the data root is the one in
the shared data README: ``MNIST/raw/*.gz`` (IDX), ``BinarizedMNIST/*.amat.gz`` (Larochelle's
static binarisation) and ``FreyFace/frey_rawface.mat``. Scikit-learn's 8x8 digits need no
files, and :func:`load_array` reads a user's own ``.npy`` / ``.npz`` images.
"""
from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler

from vgae_toolkit.errors import ConfigError, DataError

FIX_ROOT = "set paths.data_dir or VGAE_TOOLKIT_DATA to the folder that holds it"
# IDX type codes (LeCun's format description); payloads are big-endian.
IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
BINARIZE_MODES = ("none", "threshold", "dynamic")


@dataclass(kw_only=True)
class ImageData:
    """Flattened images in [0, 1] with optional labels, split into train / (valid) / test.

    Args:
        train_x (Tensor): float32 training images, ``[N, H * W]``.
        train_y (Tensor, optional): long labels ``[N]``, ``None`` for unlabelled data.
        test_x (Tensor): float32 test images, ``[M, H * W]``.
        test_y (Tensor, optional): long test labels ``[M]``.
        shape (tuple[int, int]): image height and width ``(H, W)``.
        name (str): dataset name.
        num_classes (int, optional): number of classes when labelled.
        valid_x (Tensor, optional): validation images; ``None`` when the dataset has no such split.
        valid_y (Tensor, optional): validation labels.
    """

    train_x: Tensor
    train_y: Tensor | None
    test_x: Tensor
    test_y: Tensor | None
    shape: tuple[int, int]
    name: str
    num_classes: int | None = None
    valid_x: Tensor | None = None
    valid_y: Tensor | None = None

    @property
    def num_features(self) -> int:
        return self.shape[0] * self.shape[1]


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its suffix)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; copy the dataset there or {FIX_ROOT}")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err}); re-copy the file") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type code (``0x08`` = uint8), the number of dimensions, each
    dimension as a big-endian uint32, then the payload.

    Args:
        path (str or Path): the file.

    Returns:
        A native-endian array of shape ``dims`` (uint8 for MNIST).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"{path}: not an IDX file (magic 0x{raw[:4].hex()}); expected 0x00000803 (images) or "
            "0x00000801 (labels); the file may be an HTML error page or another format - re-copy it"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header}); re-copy it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected, got = math.prod(dims) * dtype.itemsize, len(raw) - header
    if got != expected:
        raise DataError(
            f"{path}: payload has {got} bytes but dims {dims} need {expected} bytes; "
            "the file is truncated or corrupt - re-copy it"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _dataset_dir(root: str | Path, dataset: str, sub: str, expected: str) -> Path:
    """``root/sub``, or one DataError naming the dataset, the folder looked in and the fix."""
    directory = Path(root) / sub
    if not directory.is_dir():
        raise DataError(f"{dataset} not found: {directory} does not exist (expected {expected}); {FIX_ROOT}")
    return directory


def _find(directory: Path, dataset: str, name: str) -> Path:
    """``directory/name.gz``, else the uncompressed ``directory/name``."""
    for path in (directory / f"{name}.gz", directory / name):
        if path.is_file():
            return path
    raise DataError(f"{dataset}: neither {name}.gz nor {name} is in {directory}; copy the original file there")


def _to_tensor(x: np.ndarray, scale: float) -> Tensor:
    """[N, H, W] array -> float32 [N, H * W] tensor divided by ``scale``."""
    return torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / np.float32(scale))


def load_mnist(root: str | Path) -> ImageData:
    """MNIST (LeCun et al.) from ``root/MNIST/raw``: 60000 train and 10000 test 28x28 digits.

    Accepts the original ``*-idx?-ubyte.gz`` files or their uncompressed versions. Intensities
    are divided by 255. There is no validation split (carve one with the split utilities).

    Args:
        root (str or Path): the data root that holds ``MNIST/``.
    """
    raw_dir = _dataset_dir(root, "MNIST", "MNIST/raw", "train-images-idx3-ubyte.gz and the other 3 IDX files")
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x_path = _find(raw_dir, "MNIST", f"{prefix}-images-idx3-ubyte")
        y_path = _find(raw_dir, "MNIST", f"{prefix}-labels-idx1-ubyte")
        x, y = read_idx(x_path), read_idx(y_path)
        if x.ndim != 3 or y.ndim != 1:
            raise DataError(f"MNIST: expected 3-D images in {x_path} and 1-D labels in {y_path}, "
                            f"got shapes {x.shape} and {y.shape}; are the files swapped?")
        if len(x) != len(y):
            raise DataError(f"MNIST: {x_path} holds {len(x)} images but {y_path} {len(y)} labels")
        out[f"{split}_x"], out[f"{split}_y"] = _to_tensor(x, 255), torch.from_numpy(y.astype(np.int64))
    return ImageData(**out, shape=(x.shape[1], x.shape[2]), name="mnist", num_classes=10)


def _read_amat(path: Path, dim: int = 784) -> Tensor:
    """Reads a 0/1 ``.amat`` file (one image per line, ``dim`` space-separated values)."""
    text = _read_bytes(path)
    # Fast path for the original layout: every value+separator pair is 2 bytes, '0'/'1' then
    # ' ' (or '\n' at the line end); as little-endian uint16 that is 0x2030/0x2031 (0x0a3. last).
    # Masking the low bit checks both bytes at once; this is ~20x faster than np.loadtxt.
    if len(text) % (2 * dim) == 0 and len(text) > 0:
        pairs = np.frombuffer(text, "<u2").reshape(-1, dim)
        body_ok = ((pairs[:, :-1] & 0xFFFE) == 0x2030).all()
        if body_ok and ((pairs[:, -1] & 0xFFFE) == 0x0A30).all():
            return torch.from_numpy((pairs & 1).astype(np.float32))
    # Anything else (CRLF line ends, "0.0" values, extra spaces) goes through the slow parser.
    try:
        values = np.loadtxt(text.decode("ascii").splitlines(), dtype=np.float32, ndmin=2)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a text matrix of {dim} values per line ({err}); re-copy it") from err
    if values.shape[1:] != (dim,) or not np.isin(values, (0.0, 1.0)).all():
        raise DataError(f"{path}: expected lines of {dim} values in {{0, 1}}, found a {values.shape} matrix "
                        f"with values in [{values.min(initial=0)}, {values.max(initial=0)}]; re-copy the file")
    return torch.from_numpy(values)


def _evenly_spaced(x: Tensor, size: int | None) -> Tensor:
    """``size`` rows of ``x`` at evenly spaced positions, the first row included (all rows if ``size`` is None)."""
    if size is None or size >= len(x):
        return x
    return x[torch.arange(size) * len(x) // size]


def load_binarized_mnist(root: str | Path, train_size: int | None = None, valid_size: int | None = None,
                         test_size: int | None = None) -> ImageData:
    """Statically binarised MNIST, 50000 / 10000 / 10000 images without labels.

    The fixed binarisation of Salakhutdinov & Murray (ICML 2008) in the files of Larochelle &
    Murray (NADE, AISTATS 2011), read as shipped: ``binarized_mnist_{train,valid,test}.amat.gz``.

    Args:
        root (str or Path): the data root that holds ``BinarizedMNIST/``.
        train_size, valid_size, test_size (int, optional): keep only this many images of the split,
            evenly spaced through its file (the test file is ordered by digit: its first 1,000 images
            are zeros), for a short run (experiments/collapse); ``None`` keeps all (default).
    """
    directory = _dataset_dir(root, "Binarized MNIST", "BinarizedMNIST", "binarized_mnist_*.amat.gz")
    sizes = {"train": train_size, "valid": valid_size, "test": test_size}
    for split, size in sizes.items():
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"dataset.loader.{split}_size: expected null or a count >= 1, got {size!r}")
    splits = {s: _evenly_spaced(_read_amat(_find(directory, "Binarized MNIST", f"binarized_mnist_{s}.amat")),
                                sizes[s]) for s in ("train", "valid", "test")}
    return ImageData(train_x=splits["train"], train_y=None, valid_x=splits["valid"], valid_y=None,
                     test_x=splits["test"], test_y=None, shape=(28, 28), name="binarized_mnist")


def _random_split(x: Tensor, y: Tensor | None, test_fraction: float, seed: int, **meta) -> ImageData:
    """A seeded random split holding out ``round(N * test_fraction)`` images (order kept within splits)."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"dataset.loader.test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(max(1, round(len(x) * test_fraction)), len(x) - 1)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    train, test = perm[n_test:].sort().values, perm[:n_test].sort().values
    return ImageData(train_x=x[train], train_y=None if y is None else y[train],
                     test_x=x[test], test_y=None if y is None else y[test], **meta)


def load_freyface(root: str | Path, test_fraction: float = 0.1, seed: int = 0) -> ImageData:
    """Frey Face (1965 greyscale 28x20 face images, as used in AEVB), split at random.

    Args:
        root (str or Path): the data root that holds ``FreyFace/frey_rawface.mat``.
        test_fraction (float, optional): share of images held out for testing. (default: ``0.1``)
        seed (int, optional): seed of the split permutation. (default: ``0``)
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = _dataset_dir(root, "Frey Face", "FreyFace", "frey_rawface.mat") / "frey_rawface.mat"
    if not path.is_file():
        raise DataError(f"Frey Face: {path} not found; copy frey_rawface.mat there or {FIX_ROOT}")
    try:
        mat = loadmat(path)
    except (MatReadError, ValueError, OSError, IndexError, TypeError, KeyError, EOFError, OverflowError,
            MemoryError, UnicodeDecodeError) as err:  # what scipy's MAT parser raises on damaged files
        raise DataError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err}); re-copy it") from err
    ff = mat.get("ff")
    if ff is None or ff.ndim != 2 or ff.shape[0] != 28 * 20:
        found = f"keys {sorted(k for k in mat if not k.startswith('__'))}" if ff is None else f"shape {ff.shape}"
        raise DataError(f"{path}: expected variable 'ff' of shape (560, N), one 20x28 image per column; found {found}")
    images = _to_tensor(ff.T.reshape(-1, 28, 20), 255)  # [1965, 560]
    return _random_split(images, None, test_fraction, seed, shape=(28, 20), name="freyface")


def load_digits_data(test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Scikit-learn's 8x8 digits (1797 images, 10 classes), a stratified seeded split; needs no files.

    Args:
        test_fraction (float, optional): share of images held out for testing. (default: ``0.2``)
        seed (int, optional): seed of the split. (default: ``0``)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.data.astype(np.float32) / 16.0)  # values are counts 0..16
    y = torch.from_numpy(digits.target.astype(np.int64))
    train, test = train_test_split(np.arange(len(x)), test_size=test_fraction, random_state=seed,
                                   stratify=digits.target)
    return ImageData(train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test],
                     shape=(8, 8), name="digits", num_classes=10)


def _scale_images(path: Path, x: np.ndarray) -> np.ndarray:
    """Float32 images in [0, 1]; the scale is decided from the values, never guessed.

    Bool and values already in [0, 1] are used as they are (whatever the dtype, so 0/1 masks
    stay 0/1); whole numbers in 0..255 are divided by 255. Anything else (floats slightly
    above 1, negative values, values above 255, NaN or inf) is refused: rescaling those
    silently would change every image.
    """
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{path}: images have dtype {x.dtype}; expected numbers in [0, 1] or 0..255")
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError(f"{path}: image values span [{lo}, {hi}] and include NaN or inf; "
                        "expected [0, 1] floats or 0..255 integers")
    if 0 <= lo and hi <= 1:
        return x.astype(np.float32)
    whole = np.issubdtype(x.dtype, np.integer) or bool((x == np.round(x)).all())
    if 0 <= lo and hi <= 255 and whole:
        return x.astype(np.float32) / np.float32(255)
    kind = "whole numbers" if whole else f"{x.dtype} values that are not all whole numbers"
    raise DataError(f"{path}: image values span [{lo}, {hi}] ({kind}); expected floats in [0, 1] or whole "
                    "numbers in 0..255; rescale the array to one of these ranges before saving it")


def _load_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array in a ``.npy`` (under key ``""``) or ``.npz`` file, read without unpickling."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found; pass the path of a .npy or .npz array")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise DataError(f"{path}: not a readable .npy/.npz {what} array ({err}); save it with numpy.save") from err


def _labels(path: Path, arrays: dict[str, np.ndarray], labels: str | Path | None, n: int) -> np.ndarray | None:
    """Labels from an ``.npz`` key (given, else ``y`` / ``labels``) or from a separate ``.npy`` file."""
    if labels is None:
        key = next((k for k in ("y", "labels") if k in arrays), None)
        y, where = (None, path) if key is None else (arrays[key], f"{path}['{key}']")
    elif str(labels) in arrays:
        y, where = arrays[str(labels)], f"{path}['{labels}']"
    else:
        where = Path(labels)
        if not where.is_file():
            raise DataError(f"labels {labels!r} is neither a key of {path} (keys {list(arrays)}) nor a file")
        y = _load_arrays(where, "labels").get("")
        if y is None:
            raise DataError(f"{where}: labels must be one .npy array, not a .npz archive")
    return None if y is None else _check_labels(where, y, n)


# Labels become one-hot vectors and per-class plots of length max label + 1, so a stray huge
# value would allocate that much: class numbers must be small and mostly used.
MAX_CLASSES = 100_000


def _check_labels(where, y: np.ndarray, n: int) -> np.ndarray:
    """``y`` as int64 class numbers 0..K-1, or a DataError saying what was found."""
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: expected {n} non-negative integer labels, found {y.dtype} array of shape {y.shape}")
    lo, hi, distinct = int(y.min()), int(y.max()), len(np.unique(y))
    if lo < 0 or hi >= MAX_CLASSES or hi >= 10 * distinct:
        raise DataError(f"{where}: labels must be class numbers 0..K-1; found values {lo}..{hi} with {distinct} "
                        f"distinct labels (at most {MAX_CLASSES} classes, and the largest label must be below "
                        "10 x the number of distinct labels); renumber the classes 0..K-1")
    return y.astype(np.int64)


def load_array(path: str | Path, labels: str | Path | None = None, test_fraction: float = 0.1,
               seed: int = 0) -> ImageData:
    """A user's own greyscale images, ``N x H x W``, from ``.npy`` or ``.npz``, split at random.

    Args:
        path (str or Path): a ``.npy`` array or a ``.npz`` archive with key ``x`` or ``images``
            (and optionally ``y`` or ``labels``), at least 2 images. Values in [0, 1] are used as
            they are, whole numbers in 0..255 are divided by 255; anything else is refused.
        labels (str or Path, optional): a key of the ``.npz`` archive, or a ``.npy`` file of
            ``N`` integer class numbers 0..K-1. (default: ``None``)
        test_fraction (float, optional): share of images held out for testing. (default: ``0.1``)
        seed (int, optional): seed of the split permutation. (default: ``0``)
    """
    path = Path(path)
    arrays = _load_arrays(path, "image")
    x = next((arrays[k] for k in ("", "x", "images") if k in arrays), None)
    if x is None:
        raise DataError(f"{path}: no 'x' or 'images' array in the archive (keys {list(arrays)}); rename it")
    if x.ndim != 3 or min(x.shape) == 0:
        raise DataError(f"{path}: expected images of shape N x H x W, found shape {x.shape}; reshape before saving")
    if len(x) < 2:  # one image cannot be split into a training and a test set
        raise DataError(f"{path}: holds {len(x)} image; at least 2 are needed (one to train on, one to test)")
    y = _labels(path, arrays, labels, len(x))
    images = torch.from_numpy(_scale_images(path, x).reshape(len(x), -1))  # [N, H * W]
    return _random_split(images, None if y is None else torch.from_numpy(y), test_fraction, seed,
                         shape=(x.shape[1], x.shape[2]), name=path.stem,
                         num_classes=None if y is None else int(y.max()) + 1)


def binarize(x: Tensor, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Binarises intensities in [0, 1] for a Bernoulli likelihood.

    Args:
        x (Tensor): intensities in [0, 1].
        mode (str): ``"none"`` (unchanged), ``"threshold"`` (``x > 0.5``) or ``"dynamic"``
            (a fresh Bernoulli sample with mean ``x`` on every call).
        generator (torch.Generator, optional): random source for ``"dynamic"``. (default: ``None``)
    """
    if mode == "none":
        return x
    if mode == "threshold":
        return (x > 0.5).to(x.dtype)
    if mode == "dynamic":
        return torch.bernoulli(x, generator=generator)
    raise ValueError(f"unknown binarisation mode {mode!r}; expected one of {BINARIZE_MODES}")


class ImageBatches:
    """Shuffled mini-batches ``{"x": [B, D], "y": [B]}`` for one pass per iteration (epoch).

    Epoch ``e`` uses a generator seeded from ``(seed, e)``, so the order and dynamic binarisation
    of every epoch depend only on the seed and the epoch number. With ``world_size`` processes,
    each takes a ``DistributedSampler`` share of the epoch's order and ``ceil(batch_size /
    world_size)`` images of it per step, so that step i of all processes together covers the
    images of step i of one process; each process binarises with its own draws.

    Args:
        x (Tensor): images ``[N, D]`` in [0, 1].
        y (Tensor, optional): labels ``[N]``; when ``None`` batches carry no ``"y"``.
        batch_size (int): images per batch.
        shuffle (bool, optional): shuffle every epoch. (default: ``True``)
        binarize (str, optional): a :func:`binarize` mode applied per batch. (default: ``"none"``)
        seed (int, optional): base seed. (default: ``0``)
        drop_last (bool, optional): drop a final incomplete batch. (default: ``False``)
        device (torch.device or str, optional): where batches are moved. (default: ``None``)
        rank, world_size (int, optional): this process and the number of processes. (default: ``0``, ``1``)
    """

    def __init__(self, x: Tensor, y: Tensor | None = None, *, batch_size: int, shuffle: bool = True,
                 binarize: str = "none", seed: int = 0, drop_last: bool = False,
                 device: torch.device | str | None = None, rank: int = 0, world_size: int = 1) -> None:
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if binarize not in BINARIZE_MODES:
            raise ValueError(f"unknown binarisation mode {binarize!r}; expected one of {BINARIZE_MODES}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size} processes")
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.binarize, self.seed, self.drop_last, self.device = binarize, seed, drop_last, device
        self.rank, self.world_size = rank, world_size
        self.step_size = math.ceil(batch_size / world_size)  # images per step in this process
        self.epoch = 0

    def __len__(self) -> int:
        n = math.ceil(len(self.x) / self.world_size)  # this process's share (DistributedSampler pads)
        return n // self.step_size if self.drop_last else math.ceil(n / self.step_size)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration produce epoch ``epoch`` (to resume or replay one)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        self.epoch += 1
        n = len(self.x)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            share = DistributedSampler(order, num_replicas=self.world_size, rank=self.rank, shuffle=False)
            order = order[torch.tensor(list(share))]
            seed = int(np.random.SeedSequence([self.seed, self.epoch - 1, self.rank]).generate_state(1)[0])
            gen = torch.Generator().manual_seed(seed)  # this process's own binarisation draws
        for i in range(len(self)):
            idx = order[i * self.step_size:(i + 1) * self.step_size]
            xb = self.x.index_select(0, idx)  # a third of x[idx]'s time on MNIST batches (same rows)
            # Dynamic draws happen on the CPU with the epoch's generator, so they do not depend on the device.
            batch = {"x": binarize(xb.cpu(), "dynamic", gen).to(xb.device) if self.binarize == "dynamic"
                     else binarize(xb, self.binarize)}
            if self.y is not None:
                batch["y"] = self.y.index_select(0, idx)
            yield batch if self.device is None else {k: v.to(self.device) for k, v in batch.items()}
