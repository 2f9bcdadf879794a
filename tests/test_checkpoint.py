import os
import pickle

import pytest
import torch
from omegaconf import OmegaConf

from vgae_toolkit.checkpoint import load_checkpoint, save_checkpoint
from vgae_toolkit.errors import DataError


class Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    cfg = OmegaConf.create({"model": {"name": "lin"}, "seed": 3})
    path = save_checkpoint(tmp_path / "best.pt", model, cfg, {"val_ap": torch.tensor(0.5), "history": [{"epoch": 1}]})
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["weight"], model.weight)
    assert loaded["config"].seed == 3 and loaded["metrics"] == {"val_ap": 0.5, "history": [{"epoch": 1}]}
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary file left


def test_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "state_dict": {}, "config": "{}", "metrics": Exploit(marker)}, path)
    with pytest.raises(DataError, match="refused or unreadable"):
        load_checkpoint(path)
    assert not marker.exists()
    # the same file *would* run code under a plain unpickler: the test is not vacuous
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", pickle.dumps({"format": 1})])
def test_bad_files_are_named(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad.pt"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", torch.nn.Linear(50, 50), OmegaConf.create({}))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="c.pt"):
        load_checkpoint(path)
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
