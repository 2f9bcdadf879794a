import os
from pathlib import Path

import pytest
import torch


def _data_root() -> Path | None:
    root = os.environ.get("VGAE_TOOLKIT_DATA")
    return Path(root) if root and Path(root).is_dir() else None


@pytest.fixture
def data_root():
    """The real-data root (``$VGAE_TOOLKIT_DATA``); the test is skipped when it is absent."""
    root = _data_root()
    if root is None:
        pytest.skip("real data not available: set VGAE_TOOLKIT_DATA to a folder holding Planetoid/, MNIST/, ...")
    return root


def require_files(root: Path, *relative: str) -> None:
    missing = [r for r in relative if not (root / r).exists()]
    if missing:
        pytest.skip(f"real data not available: {', '.join(missing)} missing under {root}")


@pytest.fixture(scope="module")
def one_thread():
    """One thread for torch and the BLAS behind scikit-learn: layers this small gain nothing from
    threads, and on a busy 2-core machine thread contention made training ten times slower."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)
