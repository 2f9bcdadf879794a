"""A checkpoint's stored config is data: only the toolkit's own builders may be named in it."""
import os
import re

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from helpers import CONF, compose_cfg
from vgae_toolkit.checkpoint import load_checkpoint, save_checkpoint
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.predict import load_run, main
from vgae_toolkit.registry import BUILDERS, check_untrusted
from vgae_toolkit.run import run


class Exploit:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run(compose_cfg("dataset=sbm", "dataset.loader.num_nodes=100", "trainer.epochs=2", "trainer.progress=false"), out)
    return out


def tamper(run_dir, tmp_path, edit):
    """A copy of the run whose stored config has been edited by ``edit(cfg)``."""
    ckpt = load_checkpoint(run_dir / "last.pt")
    cfg = ckpt["config"]
    edit(cfg)
    evil = tmp_path / "evil_run"
    evil.mkdir()
    save_checkpoint(evil / "last.pt", ckpt["state_dict"], cfg, ckpt["metrics"])
    return evil


def open_for_writing(victim):
    return OmegaConf.create({"_target_": "builtins.open", "_args_": [str(victim), "w"]})


def test_stored_open_target_is_refused_and_the_file_survives(trained, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    evil = tamper(trained, tmp_path, lambda cfg: cfg.dataset.__setattr__("loader", open_for_writing(victim)))
    with pytest.raises(ConfigError, match=r"dataset\.loader\._target_ names 'builtins\.open'"):
        load_run(evil)
    assert victim.read_text() == "keep me"
    # the same node handed to Hydra truncates the file: the guard is what stands in the way
    instantiate(open_for_writing(victim)).close()
    assert victim.read_text() == ""


def test_stored_torch_load_of_a_side_pickle_is_refused(trained, tmp_path):
    marker = tmp_path / "pwned"
    side = tmp_path / "side.pt"
    torch.save({"x": Exploit(marker)}, side)
    node = {"_target_": "torch.load", "f": str(side), "weights_only": False}
    evil = tamper(trained, tmp_path, lambda cfg: cfg.model.__setattr__("encoder_init", node))
    with pytest.raises(ConfigError, match=r"model\.encoder_init\._target_ names 'torch\.load'"):
        load_run(evil)
    assert not marker.exists()


@pytest.mark.parametrize("node", [
    {"loader": {"_target_": "os.system", "_args_": ["true"]}},
    {"loader": {"_target_": ["vgae_toolkit.data.graphs.make_sbm"]}},  # not a string
    {"loader": {"_target_": "vgae_toolkit.data.graphs.make_sbm", "extra": [{"_target_": "subprocess.run"}]}},
])
def test_nested_or_odd_targets_are_refused(node):
    cfg = OmegaConf.create({"dataset": node})
    with pytest.raises(ConfigError, match=r"dataset\.loader.*_target_ names"):
        check_untrusted(cfg, "stored.pt")


def test_interpolations_are_refused():
    cfg = OmegaConf.create({"paths": {"data_dir": "${oc.env:HOME}"}})
    with pytest.raises(ConfigError, match=r"paths\.data_dir holds an interpolation"):
        check_untrusted(cfg, "stored.pt")


def test_predict_cli_names_the_refusal_without_a_traceback(trained, tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    evil = tamper(trained, tmp_path, lambda cfg: cfg.dataset.__setattr__("loader", open_for_writing(victim)))
    with pytest.raises(SystemExit) as exit_info:
        main([str(evil), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "ConfigError" in err and "builtins.open" in err
    assert "Traceback" not in err and victim.read_text() == "keep me"


def test_stored_config_of_the_wrong_shape_is_a_config_error(trained, tmp_path):
    evil = tamper(trained, tmp_path, lambda cfg: cfg.__delattr__("seed"))
    with pytest.raises(ConfigError, match="not a run's config"):
        load_run(evil)


def test_the_untampered_run_still_loads(trained):
    task, model, ckpt = load_run(trained)
    assert ckpt["metrics"]["model"] == "vgae" and task.embed(model)["embeddings"].shape == (100, 16)


def test_every_shipped_target_is_registered_and_importable():
    targets = set()
    for path in CONF.rglob("*.yaml"):
        targets.update(re.findall(r"^\s*_target_:\s*(\S+)", path.read_text(), flags=re.M))
    assert targets and targets <= BUILDERS, sorted(targets - BUILDERS)
    for name in BUILDERS:  # no stale names either
        module, attr = name.rsplit(".", 1)
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), name


def test_garbage_checkpoint_never_advises_an_unsafe_load(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "state_dict": {}, "config": "{}", "metrics": Exploit(tmp_path / "m")}, path)
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value) and "evil.pt" in str(info.value)
    assert "os.system" in str(info.value) or "posix.system" in str(info.value)


@pytest.mark.parametrize("config", ["[1, 2]", "a: [unclosed", 7])
def test_unparsable_stored_config_is_a_data_error(tmp_path, config):
    path = tmp_path / "c.pt"
    torch.save({"format": 1, "state_dict": {}, "config": config, "metrics": {}}, path)
    with pytest.raises(DataError, match="c.pt: its stored config"):
        load_checkpoint(path)


def test_builders_stored_under_their_former_names_are_accepted():
    from vgae_toolkit.registry import RENAMED

    for old, new in RENAMED.items():
        assert new in BUILDERS
        check_untrusted(OmegaConf.create({"trainer": {"_target_": old}}), "old.pt")  # no error
