"""Corrupted bytes fed to every file reader: each loads or fails with DataError, never crashes."""
import gzip
import shutil
import struct

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import require_files
from vgae_toolkit.checkpoint import load_checkpoint, save_checkpoint
from vgae_toolkit.data.graphs import load_edgelist, load_planetoid
from vgae_toolkit.data.images import load_array, load_freyface, read_idx
from vgae_toolkit.errors import DataError

TRIALS = 25


def corruptions(data: bytes, seed: int):
    """Truncations, flipped bytes, random garbage and an empty file."""
    rng = np.random.default_rng(seed)
    yield b""
    for _ in range(TRIALS):
        kind = rng.integers(3)
        if kind == 0:
            yield data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            buf = bytearray(data)
            for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 8))):
                buf[pos] = int(rng.integers(256))
            yield bytes(buf)
        else:
            yield rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8).tobytes()


def fuzz(path, data, load, seed=0):
    outcomes = {"loaded": 0, "refused": 0}
    for bad in corruptions(data, seed):
        path.write_bytes(bad)
        try:
            load(path)
            outcomes["loaded"] += 1
        except DataError as err:
            assert str(path.name) in str(err) or str(path.parent) in str(err), err
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0  # the corruption did reach the reader's checks
    return outcomes


def test_idx_reader(tmp_path):
    images = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    raw = struct.pack(">IIII", 0x803, 2, 4, 3) + images.tobytes()
    fuzz(tmp_path / "x-idx3-ubyte", raw, read_idx)
    fuzz(tmp_path / "x-idx3-ubyte.gz", gzip.compress(raw), read_idx, seed=1)


def test_array_reader(tmp_path):
    src = tmp_path / "src.npy"
    np.save(src, np.random.default_rng(0).random((5, 4, 4)))
    fuzz(tmp_path / "images.npy", src.read_bytes(), load_array)


def test_edgelist_reader(tmp_path):
    data = b"source,target\n" + b"".join(f"{i},{i + 1}\n".encode() for i in range(30))
    fuzz(tmp_path / "edges.csv", data, lambda p: load_edgelist(None, path=str(p)))


def test_checkpoint_reader(tmp_path):
    src = save_checkpoint(tmp_path / "src.pt", torch.nn.Linear(4, 3), OmegaConf.create({"a": 1}), {"x": 1.0})
    fuzz(tmp_path / "c.pt", src.read_bytes(), load_checkpoint)


def test_planetoid_reader(tmp_path, data_root):
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    raw = tmp_path / "Planetoid" / "Cora" / "raw"
    shutil.copytree(data_root / "Planetoid" / "Cora" / "raw", raw)
    for name in ("ind.cora.graph", "ind.cora.x", "ind.cora.test.index"):
        original = (raw / name).read_bytes()
        fuzz(raw / name, original, lambda p: load_planetoid(tmp_path, name="cora", download=False))
        (raw / name).write_bytes(original)


def test_freyface_reader(tmp_path, data_root):
    require_files(data_root, "FreyFace/frey_rawface.mat")
    folder = tmp_path / "FreyFace"
    folder.mkdir()
    original = (data_root / "FreyFace" / "frey_rawface.mat").read_bytes()
    fuzz(folder / "frey_rawface.mat", original, lambda p: load_freyface(tmp_path))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_planetoid_pickle_cannot_run_code(tmp_path, data_root):
    import pickle

    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    raw = tmp_path / "Planetoid" / "Cora" / "raw"
    shutil.copytree(data_root / "Planetoid" / "Cora" / "raw", raw)
    marker = tmp_path / "pwned"
    (raw / "ind.cora.y").write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(DataError, match="ind.cora.y is damaged or not a Planetoid file"):
        load_planetoid(tmp_path, name="cora", download=False)
    assert not marker.exists()
