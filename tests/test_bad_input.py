"""Each bad input stops with the toolkit's specific error, before anything is written."""
import numpy as np
import pytest
import torch

from helpers import compose_cfg
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.predict import main as predict
from vgae_toolkit.run import run


def run_fails(tmp_path, error, match, *overrides):
    out = tmp_path / "run"
    with pytest.raises(error, match=match):
        run(compose_cfg(*overrides, "trainer.progress=false"), out)
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("overrides, match", [
    (["model.latent=0"], r"model\.latent: expected an integer in \[1, 65536\], got 0"),
    (["model=vae", "dataset=digits", "model.latent_dim=0"], r"model\.latent_dim: expected an integer in \[1, 65536\], got 0"),
    (["split.val_frac=0.6", "split.test_frac=0.5"], "sum below 1"),
    (["model.recon=full"], "model.recon: expected"),
])
def test_bad_config_values(tmp_path, overrides, match):
    run_fails(tmp_path, ConfigError, match, "dataset=karate", *overrides)


def test_graph_without_edges_or_with_isolated_nodes_only(tmp_path):
    (tmp_path / "loops.csv").write_text("source,target\na,a\nb,b\n")
    run_fails(tmp_path, ConfigError, "cannot be split", "dataset=edgelist",
              f"dataset.loader.path={tmp_path / 'loops.csv'}")
    (tmp_path / "empty.csv").write_text("source,target\n")
    run_fails(tmp_path, DataError, "no edges", "dataset=edgelist", f"dataset.loader.path={tmp_path / 'empty.csv'}")


def test_image_run_exports_latents_and_samples(tmp_path, capsys):
    out = tmp_path / "run"
    run(compose_cfg("model=vae", "dataset=digits", "trainer.epochs=2", "trainer.progress=false",
                    "dataset.iw_samples=2", "model.latent_dim=3"), out)
    predict([str(out), "--out", str(tmp_path / "p")])
    latent = np.load(tmp_path / "p" / "latent_test.npy")
    samples = np.load(tmp_path / "p" / "samples.npy")
    assert latent.shape == (360, 3) and samples.shape == (100, 64)
    assert 0 <= samples.min() and samples.max() <= 1
    with pytest.raises(SystemExit):  # pairs are a graph thing
        (tmp_path / "pairs.csv").write_text("0,1\n")
        predict([str(out), "--pairs", str(tmp_path / "pairs.csv")])
    assert "--pairs needs a graph run" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=True)["format"] == 1
