"""The image task end to end: configs, the run directory, learning on digits, figures, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from conftest import require_files
from helpers import compose_cfg, options
from vgae_toolkit.plots import vae as plots_vae
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.metrics import kl_per_dimension
from vgae_toolkit.plots.images import TITLE_PX
from vgae_toolkit.predict import load_run
from vgae_toolkit.run import run
from vgae_toolkit.tasks.image import hold_out

IMAGE_DATASETS = ["array", "binarized_mnist", "digits", "freyface", "mnist"]
IMAGE_MODELS = ["cvae", "vae", "vae_paper"]
IMAGE_EXPERIMENTS = ["figure2_freyface", "figure2_mnist", "figure4", "figure5", "vae_modern", "vae_paper"]


pytestmark = pytest.mark.usefixtures("one_thread")


def digits_run(out, *overrides, epochs=15):
    cfg = compose_cfg("+experiment=vae_modern", "dataset=digits", f"trainer.epochs={epochs}", "trainer.progress=false",
                      "dataset.iw_samples=50", "dataset.batch_size=64", "model.hidden=[128]", "model.latent_dim=8",
                      *overrides)
    return run(cfg, out)


def png_size(path):
    height, width = imread(path).shape[:2]
    return height, width


def grid_px(n_rows, n_cols, shape, scale, title=True):
    """Pixel size of a save_image_grid PNG (padding 1)."""
    h, w = shape
    return scale * (n_rows * (h + 1) + 1) + (TITLE_PX if title else 0), scale * (n_cols * (w + 1) + 1)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    return out, digits_run(out, "dataset.track_test=true")


# -- configuration -------------------------------------------------------------------------
def test_image_options_are_image_kind():
    assert set(IMAGE_DATASETS) <= set(options("dataset")) and set(IMAGE_MODELS) <= set(options("model"))
    assert set(IMAGE_EXPERIMENTS) <= set(options("experiment"))
    for name in IMAGE_DATASETS:
        assert compose_cfg(f"dataset={name}", "model=vae").dataset.kind == "image"
    for name in IMAGE_MODELS:
        assert compose_cfg("dataset=digits", f"model={name}").model.kind == "image"


@pytest.mark.parametrize("model, dataset", [("vae", "cora"), ("vgae", "digits")])
def test_model_and_dataset_kinds_must_match(tmp_path, model, dataset):
    with pytest.raises(ConfigError, match=f"model={model} .* dataset={dataset} "):
        run(compose_cfg(f"model={model}", f"dataset={dataset}"), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("experiment", IMAGE_EXPERIMENTS)
def test_every_image_experiment_composes(experiment):
    from omegaconf import OmegaConf

    cfg = compose_cfg(f"+experiment={experiment}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert cfg.model.kind == cfg.dataset.kind == "image"
    assert resolved["trainer"]["monitor"] == "val_elbo"


def test_paper_preset_follows_the_dataset():
    mnist = compose_cfg("+experiment=vae_paper", "dataset=mnist")
    frey = compose_cfg("+experiment=vae_paper", "dataset=freyface", "model.latent_dim=2")
    assert mnist.model.hidden == [500] and mnist.model.decoder == "bernoulli" and mnist.model.activation == "tanh"
    assert frey.model.hidden == [200] and frey.model.decoder == "gaussian" and frey.model.latent_dim == 2
    assert mnist.trainer.optimizer == "adagrad" and mnist.dataset.batch_size == 100 and mnist.model.init_std == 0.01


def test_hold_out():
    train, val = hold_out(100, 0.2, seed=0)
    assert len(train) == 80 and len(val) == 20 and not set(train.tolist()) & set(val.tolist())
    assert torch.equal(hold_out(100, 0.2, seed=0)[1], val) and not torch.equal(hold_out(100, 0.2, seed=1)[1], val)
    assert len(hold_out(100, 7, seed=0)[1]) == 7 and len(hold_out(100, 0, seed=0)[1]) == 0
    for bad in (-1, 1.5, 100, True):
        with pytest.raises(ConfigError, match="val_size"):
            hold_out(100, bad, seed=0)


# -- a run on digits -------------------------------------------------------------------------
def test_run_learns_and_describes_itself(vae_run):
    out, metrics = vae_run
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics, default=float))
    for key in ("train_elbo", "val_elbo", "test_elbo", "test_iw_log_likelihood", "test_kl", "kl_per_dim",
                "active_units", "split_sizes", "image_shape", "iw_samples", "selected_epoch"):
        assert key in written, key
    assert written["split_sizes"] == {"train": 1293, "val": 144, "test": 360} and written["image_shape"] == [8, 8]
    assert len(written["kl_per_dim"]) == 8
    # the recorded activity is that of the saved model's posterior means on the test images
    task, model, _ = load_run(out, which="last")
    with torch.no_grad():
        mu = model.encode(task.sets["test"][0]).mu
    assert written["active_units"] == int((mu.double().var(dim=0, correction=0) > 0.01).sum())
    torch.testing.assert_close(torch.tensor(written["kl_per_dim"]), kl_per_dimension(model.encode(task.sets["test"][0])),
                               rtol=1e-5, atol=1e-6)
    assert written["test_kl"] == pytest.approx(sum(written["kl_per_dim"]), rel=1e-5)
    history = written["history"]
    assert [h["samples_seen"] for h in history] == [1293 * e for e in range(1, 16)]
    # Measured over seeds 0-2: training loss ~40 -> ~26 nats, validation and test ELBO ~-35.5 -> ~-26.
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 8
    assert history[-1]["val_elbo"] > history[0]["val_elbo"] + 4
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 4
    assert written["test_iw_log_likelihood"] >= written["test_elbo"]  # a tighter bound on the same model
    assert written["test_elbo"] == history[-1]["test_elbo"]  # same fixed samples at the end as per epoch


def test_figures_have_the_expected_size(vae_run):
    out, _ = vae_run
    assert png_size(out / "samples.png") == grid_px(10, 10, (8, 8), 7)
    assert png_size(out / "reconstructions.png") == grid_px(10, 10, (8, 8), 7)
    assert png_size(out / "elbo_curves.png")[0] > 300 and png_size(out / "curves.png")[0] > 300
    assert not (out / "manifold.png").exists() and not (out / "styles.png").exists()


def test_tracking_the_test_bound_does_not_change_training(tmp_path, vae_run):
    _, tracked = vae_run
    plain = digits_run(tmp_path)
    assert "test_elbo" not in plain["history"][0] and "test_elbo" in tracked["history"][0]
    strip = [{k: v for k, v in h.items() if k != "test_elbo"} for h in tracked["history"]]
    assert plain["history"] == strip and plain["test_elbo"] == tracked["test_elbo"]


def test_two_dimensional_latent_writes_the_manifold(tmp_path):
    metrics = digits_run(tmp_path, "model.latent_dim=2", "dataset.iw_samples=0", epochs=2)
    assert "test_iw_log_likelihood" not in metrics
    assert png_size(tmp_path / "manifold.png") == grid_px(20, 20, (8, 8), 7)


def test_manifold_latents_are_gaussian_quantiles():
    z = plots_vae.manifold_latents(4)
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert z.shape == (16, 2)
    torch.testing.assert_close(z[:4, 0], q)  # first row: z_1 goes right ...
    torch.testing.assert_close(z[::4, 1], q.flip(0))  # ... and z_2 goes down


class LabelPainter(torch.nn.Module):
    """A stand-in conditional decoder whose mean image is filled with y / 10 (and ignores z)."""

    latent_dim = 3

    def decode(self, z, y):
        return (y.float() / 10).unsqueeze(-1).expand(len(y), 4)

    class decoder:  # noqa: N801 - mirrors VAE.decoder.mean
        mean = staticmethod(lambda params: params)


def test_style_grid_puts_label_j_in_column_j(tmp_path):
    path = plots_vae.save_style_grid(LabelPainter(), (2, 2), tmp_path / "styles.png", num_classes=10, rows=3)
    grid = imread(path)[TITLE_PX:, :, 0]  # [rows, cols] greyscale, scale 28
    scale = plots_vae.pixel_scale((2, 2))
    for j in range(10):
        for r in range(3):
            top, left = scale * (1 + r * 3), scale * (1 + j * 3)
            assert abs(grid[top:top + 2 * scale, left:left + 2 * scale].mean() - j / 10) < 0.01


def test_cvae_run_writes_the_style_grid(tmp_path):
    metrics = digits_run(tmp_path, "model=cvae", "dataset.iw_samples=10", epochs=2)
    assert metrics["conditional"] is True and metrics["num_classes"] == 10
    assert png_size(tmp_path / "styles.png") == grid_px(10, 10, (8, 8), 7)


def test_figure2_and_panels_from_run_dirs(tmp_path, vae_run):
    out, _ = vae_run
    paths = plots_vae.figure2([out], tmp_path / "fig")
    assert [p.name for p in paths] == ["figure2.png", "figure2_curves.csv", "figure2_final.csv"]
    curves = (tmp_path / "fig" / "figure2_curves.csv").read_text().splitlines()
    assert curves[0] == "dataset,latent_dim,curve,samples_seen,elbo" and len(curves) == 1 + 3 * 15
    panel = plots_vae.image_panels([out], "samples.png", tmp_path / "fig" / "figure5.png", "samples")
    assert panel.stat().st_size > 10_000


# -- errors ------------------------------------------------------------------------------------
def test_select_best_needs_the_image_monitor_and_a_validation_split(tmp_path):
    with pytest.raises(ConfigError, match="trainer.monitor=val_ap"):
        digits_run(tmp_path, "trainer.select=best", "trainer.monitor=val_ap")
    with pytest.raises(ConfigError, match="validation split"):
        digits_run(tmp_path, "trainer.select=best", "dataset.val_size=0")


def test_user_array_relative_to_data_dir_and_cvae_needs_labels(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "faces.npz", x=rng.integers(0, 256, (60, 5, 4), dtype=np.uint8))
    base = ["dataset=array", "dataset.loader.path=faces.npz", f"paths.data_dir={tmp_path}"]
    metrics = digits_run(tmp_path / "run", *base, "dataset.iw_samples=5", epochs=1)
    assert metrics["image_shape"] == [5, 4] and metrics["split_sizes"] == {"train": 49, "val": 5, "test": 6}
    with pytest.raises(ConfigError, match="needs labels"):
        digits_run(tmp_path / "cvae", *base, "model=cvae", epochs=1)
    with pytest.raises(DataError, match="missing.npz"):
        digits_run(tmp_path / "missing", "dataset=array", "dataset.loader.path=missing.npz", epochs=1)


def test_missing_mnist_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="MNIST not found"):
        digits_run(tmp_path / "run", "dataset=mnist", f"paths.data_dir={tmp_path}")


# -- real data and the command line (slow) ------------------------------------------------------
@pytest.mark.slow
def test_real_mnist_one_epoch(tmp_path, data_root):
    require_files(data_root, "MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/t10k-images-idx3-ubyte.gz")
    cfg = compose_cfg("+experiment=vae_modern", "dataset=mnist", f"paths.data_dir={data_root}", "trainer.epochs=1",
                      "trainer.progress=false", "dataset.iw_samples=5")
    metrics = run(cfg, tmp_path)
    assert metrics["split_sizes"] == {"train": 50000, "val": 10000, "test": 10000}
    # Measured: validation ELBO -134.2 nats after one epoch (-107.1 after ten).
    assert -145 < metrics["test_elbo"] < -120 and metrics["test_iw_log_likelihood"] > metrics["test_elbo"]
    assert png_size(tmp_path / "samples.png") == grid_px(10, 10, (28, 28), 2)


@pytest.mark.slow
def test_figure_sweep_from_the_command_line(tmp_path):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "vgae_toolkit", "-m", "+experiment=figure5", "dataset=digits",
                           "trainer.epochs=2", "trainer.progress=false", f"hydra.sweep.dir={sweep}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list(sweep.glob("*/metrics.json"))) == 4
    proc = subprocess.run([sys.executable, "-m", "vgae_toolkit.plots.vae", "figure5", str(sweep), "--out",
                           str(tmp_path / "fig")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig" / "figure5.png").is_file()
