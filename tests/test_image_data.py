"""Image loaders, binarisation, batching and image grids: tiny hand-made files plus real-data checks."""
import gzip
import struct

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from conftest import require_files
from vgae_toolkit.data.images import (
    ImageBatches,
    binarize,
    load_array,
    load_binarized_mnist,
    load_digits_data,
    load_freyface,
    load_mnist,
    read_idx,
)
from vgae_toolkit.errors import DataError
from vgae_toolkit.plots.images import TITLE_PX, image_grid, save_image_grid

MNIST_FILES = [f"MNIST/raw/{n}.gz" for n in (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
BMNIST_FILES = [f"BinarizedMNIST/binarized_mnist_{s}.amat.gz" for s in ("train", "valid", "test")]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of uint8 ``array``: magic 0x0000 08 ndim, big-endian dims, payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


# --- IDX -------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_images_and_labels(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    labels = np.array([7, 0, 9], dtype=np.uint8)
    for name, array in (("img", images), ("lbl", labels)):
        data = idx_bytes(array)
        (tmp_path / name).write_bytes(gzip.compress(data) if compress else data)
    got = read_idx(tmp_path / "img")
    assert got.shape == (2, 3, 4) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lbl"), labels)
    assert idx_bytes(images)[:4] == b"\x00\x00\x08\x03"  # the MNIST image magic 0x00000803


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "page.html"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="page.html") as err:
        read_idx(path)
    assert "0x00000803" in str(err.value)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated(tmp_path, compress):
    data = idx_bytes(np.ones((4, 5, 5), np.uint8))[:-7]
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match="short-idx3-ubyte") as err:
        read_idx(path)
    assert "93 bytes" in str(err.value) and "100 bytes" in str(err.value)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((50, 50), np.uint8)))[:30])
    with pytest.raises(DataError, match="broken.gz"):
        read_idx(path)


def test_missing_dataset_folders_name_the_fix(tmp_path):
    for loader, folder in ((load_mnist, "MNIST"), (load_binarized_mnist, "BinarizedMNIST"),
                           (load_freyface, "FreyFace")):
        with pytest.raises(DataError, match=folder) as err:
            loader(tmp_path)
        assert "VGAE_TOOLKIT_DATA" in str(err.value)


def test_load_mnist_from_uncompressed_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 3)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n) % 10))
    data = load_mnist(tmp_path)
    assert data.train_x.shape == (6, 784) and data.test_x.shape == (3, 784) and data.valid_x is None
    assert data.train_y.tolist() == [0, 1, 2, 3, 4, 5] and data.train_y.dtype == torch.long
    # A label file with a different count must be caught.
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(4)))
    with pytest.raises(DataError, match="3 images"):
        load_mnist(tmp_path)


def write_bmnist(root, rows: np.ndarray, newline: str = "\n", compress: bool = True) -> None:
    """Binarized-MNIST files whose three splits all hold ``rows`` (0/1 ints, [n, 784])."""
    folder = root / "BinarizedMNIST"
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(" ".join(map(str, row)) + newline for row in rows).encode()
    for split in ("train", "valid", "test"):
        name = f"binarized_mnist_{split}.amat" + (".gz" if compress else "")
        (folder / name).write_bytes(gzip.compress(text) if compress else text)


@pytest.mark.parametrize("newline,compress", [("\n", True), ("\n", False), ("\r\n", True)])
def test_binarized_mnist_tiny(tmp_path, newline, compress):
    rows = np.random.default_rng(0).integers(0, 2, (3, 784))
    write_bmnist(tmp_path, rows, newline, compress)
    data = load_binarized_mnist(tmp_path)
    assert data.shape == (28, 28) and data.train_y is None and data.valid_x.shape == (3, 784)
    np.testing.assert_array_equal(data.test_x.numpy(), rows)


def test_binarized_mnist_malformed_line(tmp_path):
    write_bmnist(tmp_path, np.zeros((2, 783), np.int64))
    with pytest.raises(DataError, match="binarized_mnist_train.amat.gz") as err:
        load_binarized_mnist(tmp_path)
    assert "784" in str(err.value)


def test_freyface_wrong_variable(tmp_path):
    from scipy.io import savemat

    (tmp_path / "FreyFace").mkdir()
    savemat(tmp_path / "FreyFace" / "frey_rawface.mat", {"faces": np.zeros((560, 3), np.uint8)})
    with pytest.raises(DataError, match="frey_rawface.mat") as err:
        load_freyface(tmp_path)
    assert "'ff'" in str(err.value) and "faces" in str(err.value)


# --- digits and user arrays --------------------------------------------------------------------

def test_digits():
    data = load_digits_data(test_fraction=0.2, seed=0)
    assert data.shape == (8, 8) and data.num_classes == 10
    assert len(data.train_x) + len(data.test_x) == 1797 and data.test_x.shape == (360, 64)
    assert data.train_x.dtype == torch.float32 and 0.0 <= data.train_x.min() and data.train_x.max() == 1.0
    assert set(data.test_y.tolist()) == set(range(10))
    again = load_digits_data(test_fraction=0.2, seed=0)
    assert torch.equal(data.test_x, again.test_x)
    assert not torch.equal(data.test_x, load_digits_data(test_fraction=0.2, seed=1).test_x)


def test_array_npy_uint8(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 5, 4)).astype(np.uint8)
    np.save(tmp_path / "imgs.npy", x)
    np.save(tmp_path / "lbls.npy", np.arange(20) % 3)
    data = load_array(tmp_path / "imgs.npy", labels=tmp_path / "lbls.npy", test_fraction=0.25, seed=0)
    assert data.shape == (5, 4) and data.train_x.shape == (15, 20) and data.test_x.shape == (5, 20)
    assert data.num_classes == 3 and data.train_y.dtype == torch.long
    everything = torch.cat([data.train_x, data.test_x]) * 255
    assert sorted(everything.round().sum(1).tolist()) == sorted(x.reshape(20, -1).sum(1).astype(float).tolist())


def test_array_npz_unit_floats(tmp_path):
    x = np.random.default_rng(0).random((10, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "own.npz", images=x, labels=np.zeros(10, np.int64))
    data = load_array(tmp_path / "own.npz", test_fraction=0.2)
    assert data.name == "own" and data.num_classes == 1 and data.test_y.tolist() == [0, 0]
    got = torch.cat([data.train_x, data.test_x])
    assert np.isclose(got.sum().item(), x.sum(), rtol=1e-5)  # not rescaled
    np.savez(tmp_path / "own255.npz", x=np.round(x * 255))  # whole numbers above 1 are read as 0..255
    scaled = load_array(tmp_path / "own255.npz", test_fraction=0.2)
    assert torch.allclose(torch.cat([scaled.train_x, scaled.test_x]), got, atol=0.5 / 255) and scaled.train_y is None


def test_array_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((10, 784)))
    with pytest.raises(DataError, match="flat.npy") as err:
        load_array(tmp_path / "flat.npy")
    assert "(10, 784)" in str(err.value)
    np.savez(tmp_path / "nokey.npz", pixels=np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="nokey.npz"):
        load_array(tmp_path / "nokey.npz")
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match="ok.npz") as err:
        load_array(tmp_path / "ok.npz", labels="classes")
    assert "classes" in str(err.value)
    np.save(tmp_path / "neg.npy", -np.ones((2, 2, 2)))
    with pytest.raises(DataError, match="neg.npy"):
        load_array(tmp_path / "neg.npy")


# --- binarisation and batches -----------------------------------------------------------------

def test_binarize_modes():
    x = torch.tensor([0.0, 0.2, 0.5, 0.51, 1.0])
    assert torch.equal(binarize(x, "none"), x)
    assert binarize(x, "threshold").tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    big = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    a = binarize(big, "dynamic", torch.Generator().manual_seed(1))
    b = binarize(big, "dynamic", torch.Generator().manual_seed(2))
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - big.mean().item()) < 5e-3
    assert not torch.equal(a, b)
    assert torch.equal(a, binarize(big, "dynamic", torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="threshold"):
        binarize(x, "stochastic")


def test_batches_cover_every_sample_and_are_deterministic():
    x = torch.arange(23, dtype=torch.float32).unsqueeze(1).repeat(1, 4) / 23  # row i holds i / 23
    y = torch.arange(23)
    batches = ImageBatches(x, y, batch_size=5, seed=3)
    assert len(batches) == 5
    epoch1, epoch2 = list(batches), list(batches)
    seen = torch.cat([b["y"] for b in epoch1])
    assert sorted(seen.tolist()) == list(range(23)) and [len(b["y"]) for b in epoch1] == [5, 5, 5, 5, 3]
    assert all(torch.equal(b["x"][:, 0], b["y"] / 23) for b in epoch1)  # x and y stay paired
    assert not torch.equal(seen, torch.cat([b["y"] for b in epoch2]))  # reshuffled per epoch
    replay = ImageBatches(x, y, batch_size=5, seed=3)
    assert all(torch.equal(a["y"], b["y"]) for a, b in zip(epoch1, replay))
    assert len(list(ImageBatches(x, batch_size=5, drop_last=True))) == 4


def test_batches_dynamic_binarisation_without_labels():
    x = torch.full((40, 10), 0.5)
    first = list(ImageBatches(x, batch_size=8, binarize="dynamic", seed=0))
    assert all("y" not in b and set(b["x"].unique().tolist()) <= {0.0, 1.0} for b in first)
    again = list(ImageBatches(x, batch_size=8, binarize="dynamic", seed=0))
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(first, again))


# --- grids ------------------------------------------------------------------------------------

def test_image_grid_layout():
    images = torch.stack([torch.full((6,), float(i) / 10) for i in range(7)])  # 7 images of 2x3
    grid = image_grid(images, (2, 3), nrow=3, padding=1)
    assert grid.shape == (3 * 3 + 1, 3 * 4 + 1)
    assert np.allclose(grid[1:3, 1:4], 0.0) and np.allclose(grid[4:6, 5:8], 0.4)
    assert np.allclose(grid[7:9, 5:8], 1.0)  # the empty cell after image 6
    assert image_grid(images.reshape(7, 2, 3), (2, 3), nrow=7, padding=0).shape == (2, 21)


@pytest.mark.parametrize("title", [None, "samples"])
def test_save_image_grid_png_size(tmp_path, title):
    images = torch.rand(100, 784, generator=torch.Generator().manual_seed(0))
    path = save_image_grid(images, (28, 28), tmp_path / "sub" / "grid.png", nrow=10, title=title, scale=3)
    assert path.is_file()
    png = imread(path)
    side = 10 * (28 + 1) + 1  # 291 pixels before scaling
    assert png.shape[:2] == (3 * side + (TITLE_PX if title else 0), 3 * side)
    if title is None:  # pixels come back as drawn (up to 8-bit rounding)
        assert np.abs(png[::3, ::3, 0] - image_grid(images, (28, 28), nrow=10)).max() < 0.01


# --- real data --------------------------------------------------------------------------------

def test_real_mnist(data_root):
    require_files(data_root, *MNIST_FILES)
    data = load_mnist(data_root)
    assert data.train_x.shape == (60000, 784) and data.test_x.shape == (10000, 784)
    assert data.shape == (28, 28) and data.num_classes == 10 and data.valid_x is None
    assert data.train_x.min() == 0.0 and data.train_x.max() == 1.0
    assert torch.bincount(data.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(data.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_binarized_mnist(data_root):
    require_files(data_root, *BMNIST_FILES)
    data = load_binarized_mnist(data_root)
    assert data.train_x.shape == (50000, 784) and data.valid_x.shape == (10000, 784)
    assert data.test_x.shape == (10000, 784) and data.train_y is None
    assert set(data.test_x.unique().tolist()) == {0.0, 1.0}
    assert [int(t.sum()) for t in (data.train_x, data.valid_x, data.test_x)] == [5118041, 1028036, 1038896]


def test_real_freyface(data_root):
    require_files(data_root, "FreyFace/frey_rawface.mat")
    data = load_freyface(data_root, test_fraction=0.1, seed=0)
    assert len(data.train_x) + len(data.test_x) == 1965 and data.shape == (28, 20)
    assert data.train_x.shape[1] == 560 and 0.0 < data.train_x.min() and data.train_x.max() < 1.0
    assert abs(torch.cat([data.train_x, data.test_x]).mean().item() * 255 - 154.46) < 0.01
