"""Table 1 as one command: the sweep's jobs, the baselines as models, resuming, the smoke target."""
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from helpers import CONF, compose_cfg
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.closed_form import ClosedFormFit
from vgae_toolkit.models.embedding import DeepWalk, SpectralEmbedding
from vgae_toolkit.models.graph import GraphBatch
from vgae_toolkit.run import run

ROOT = CONF.parent
AUTOENCODER_ROWS = ["gae_star", "vgae_star", "gae", "vgae"]


pytestmark = pytest.mark.usefixtures("one_thread")


def sweep_jobs(*overrides: str) -> list[list[str]]:
    """The override lists of every job Hydra's basic sweeper launches for this command line."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return jobs


def choice(job: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in job if o.startswith(f"{key}="))


# -- the sweep ---------------------------------------------------------------------------------
def test_table1_sweep_expands_to_180_jobs():
    jobs = sweep_jobs("+experiment=table1")
    # 2 baselines x 3 datasets x 10 seeds + 2 auto-encoders x 2 feature settings x 3 datasets x 10 seeds
    assert len(jobs) == 2 * 3 * 10 + 2 * 2 * 3 * 10 == 180
    keys = {(choice(j, "table1_row"), choice(j, "dataset"), choice(j, "seed")) for j in jobs}
    assert len(keys) == 180
    assert Counter(choice(j, "table1_row") for j in jobs) == {r: 30 for r in ["sc", "dw", *AUTOENCODER_ROWS]}
    assert {choice(j, "seed") for j in jobs} == {str(s) for s in range(10)}


@pytest.mark.parametrize("row, model, features, trainer", [
    ("sc", "spectral", True, "ClosedFormFit"), ("dw", "deepwalk", True, "ClosedFormFit"),
    ("gae_star", "gae", False, "Trainer"), ("vgae_star", "vgae", False, "Trainer"),
    ("gae", "gae", True, "Trainer"), ("vgae", "vgae", True, "Trainer"),
])
def test_each_row_is_one_model_and_feature_setting_on_a_shared_split(row, model, features, trainer):
    cfg = compose_cfg("+experiment=table1", f"table1_row={row}", "dataset=citeseer", "seed=7")
    assert cfg.model.name == model and cfg.dataset.features is features
    assert cfg.trainer._target_.endswith(trainer) and cfg.skip_finished is True
    assert cfg.split.seed == 7  # the split and its negatives depend on the seed only, not on the row
    if trainer == "Trainer":  # the paper's protocol: the defaults
        assert (cfg.trainer.epochs, cfg.trainer.lr, cfg.trainer.select) == (200, 0.01, "last")
        assert (cfg.model.hidden, cfg.model.latent, cfg.model.recon) == (32, 16, "auto")


def test_run_directories_are_named_by_row_dataset_and_seed():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=table1", "table1_row=gae_star", "dataset=pubmed", "seed=3"],
                      return_hydra_config=True)
    assert cfg.hydra.sweep.subdir == "gae_star_pubmed_s3"
    assert "${now:" not in OmegaConf.to_yaml(cfg.hydra.sweep)  # a re-run resumes in the same folders


def test_tuned_preset_chooses_only_autoencoder_knobs():
    jobs = sweep_jobs("+experiment=table1_tuned")
    assert {choice(j, "table1_row") for j in jobs} == set(AUTOENCODER_ROWS) and len(jobs) == 4 * 3 * 10
    for dataset in ("cora", "citeseer", "pubmed"):
        cfg = compose_cfg("+experiment=table1_tuned", "table1_row=vgae_star", f"dataset={dataset}")
        OmegaConf.to_container(cfg, resolve=True)  # every per-dataset value resolves
        assert cfg.trainer.select in ("last", "best")


def test_featureless_widths_are_the_papers_unless_the_preset_sets_them():
    def widths(*overrides):
        cfg = compose_cfg(*overrides)
        return cfg.model.hidden, cfg.model.latent
    for row in ("gae_star", "vgae_star"):
        assert widths("+experiment=table1", f"table1_row={row}", "dataset=citeseer") == (32, 16)  # paper
    assert widths("+experiment=table1_tuned", "table1_row=gae_star", "dataset=citeseer") == (64, 32)
    assert widths("+experiment=table1_tuned", "table1_row=vgae_star", "dataset=citeseer") == (32, 16)
    assert widths("+experiment=table1_tuned", "table1_row=gae_star", "dataset=cora") == (32, 16)
    assert widths("+experiment=table1_tuned", "table1_row=gae_star", "dataset=citeseer", "model.hidden=8") == (8, 32)


def test_self_loop_labels_are_the_reference_codes_unless_the_preset_drops_them():
    def loss_and_fit(*overrides):
        cfg = compose_cfg(*overrides)
        return cfg.model.dense_self_loops, cfg.trainer.epochs, cfg.trainer.select
    for row in ("gae", "vgae", "gae_star", "vgae_star"):
        for dataset in ("cora", "citeseer"):
            assert loss_and_fit("+experiment=table1", f"table1_row={row}", f"dataset={dataset}")[0] is True
    assert loss_and_fit("+experiment=table1_tuned", "table1_row=vgae_star", "dataset=citeseer") == (False, 1600, "last")
    assert loss_and_fit("+experiment=table1_tuned", "table1_row=gae_star", "dataset=citeseer") == (True, 400, "best")
    assert loss_and_fit("+experiment=table1_tuned", "table1_row=vgae_star", "dataset=cora") == (True, 400, "best")
    assert loss_and_fit("+experiment=table1_tuned", "table1_row=vgae_star", "dataset=citeseer",
                        "model.dense_self_loops=true")[0] is True


@pytest.mark.parametrize("launcher, plugin", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_launchers_compose(launcher, plugin):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=table1", f"launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(plugin)


# -- the baselines as models -------------------------------------------------------------------
def _toy_batch() -> GraphBatch:
    pos = torch.tensor([[0, 1, 0, 2, 3, 3, 4], [1, 2, 2, 3, 4, 5, 5]])
    return GraphBatch(x=None, adj=torch.eye(6).to_sparse_csr(), pos=pos)


def test_closed_form_fit_fits_once_and_records_one_epoch():
    model = SpectralEmbedding(in_channels=None, num_nodes=6, dim=2)
    calls = []
    result = ClosedFormFit(progress=False, callbacks=[lambda *a: calls.append(a[0])]).fit(
        model, [_toy_batch()], evaluate=lambda m: {"val_auc": 0.5})
    assert result.selected_epoch == 1 and result.history == [{"epoch": 1, "val_auc": 0.5}] and calls == [1]
    pairs = torch.tensor([[0, 3], [1, 4]])
    expected = (model.embedding[pairs[0]] * model.embedding[pairs[1]]).sum(-1)
    assert torch.equal(model.score(_toy_batch(), pairs), expected) and model.embedding.abs().sum() > 0


def test_embedding_models_refuse_gradient_training_and_vice_versa():
    model = DeepWalk(in_channels=3, num_nodes=6, dim=4)
    with pytest.raises(ConfigError, match="trainer=closed_form"):
        model.loss(_toy_batch())
    with pytest.raises(RuntimeError, match="before fit"):
        model.score(_toy_batch(), torch.tensor([[0], [1]]))
    with pytest.raises(ConfigError, match="trainer=default"):
        ClosedFormFit().fit(torch.nn.Linear(2, 2), [_toy_batch()])


def test_baseline_configs_select_the_closed_form_fit():
    for model in ("spectral", "deepwalk"):
        assert compose_cfg(f"model={model}").trainer._target_ == "vgae_toolkit.closed_form.ClosedFormFit"
        assert compose_cfg(f"model={model}", "trainer=default").trainer._target_ == "vgae_toolkit.trainer.Trainer"
    assert compose_cfg("model=gae", "trainer=closed_form").trainer._target_ == "vgae_toolkit.closed_form.ClosedFormFit"


SBM = ["dataset=sbm", "dataset.loader.num_nodes=400", "dataset.loader.num_blocks=8", "trainer.progress=false"]


@pytest.mark.parametrize("model, knobs", [
    # 7 non-trivial eigenvectors separate 8 blocks; more only add unweighted noise to inner products
    ("spectral", ["model.dim=7"]),
    ("deepwalk", ["model.dim=32", "model.walks_per_node=5", "model.walk_length=20", "model.window=5"]),
])
def test_baselines_through_run_beat_075_auc_on_the_sbm(tmp_path, model, knobs):
    metrics = run(compose_cfg(f"model={model}", *SBM, *knobs), tmp_path)
    assert metrics["model"] == model and metrics["selected_epoch"] == 1 and len(metrics["history"]) == 1
    assert metrics["test_auc"] > 0.75 and metrics["val_auc"] > 0.75
    assert metrics["embedding_dim"] == int(knobs[0].split("=")[1])
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "complete"


# -- resuming ----------------------------------------------------------------------------------
def test_skip_finished_returns_a_finished_run_of_the_same_config(tmp_path, monkeypatch):
    small = [*SBM, "model=gae", "trainer.epochs=3", "skip_finished=true"]
    first = run(compose_cfg(*small), tmp_path)
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns

    import vgae_toolkit.run as run_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "build_model", no_training)
        again = run(compose_cfg(*small), tmp_path)
    assert again == json.loads((tmp_path / "metrics.json").read_text()) and again["test_auc"] == first["test_auc"]
    assert (tmp_path / "metrics.json").stat().st_mtime_ns == stamp

    with pytest.raises(ConfigError, match="trainer.epochs: 3 -> 4"):  # never overwrite a finished run of another config
        run(compose_cfg(*small[:-2], "trainer.epochs=4", "skip_finished=true"), tmp_path)
    rerun = run(compose_cfg(*small[:-1], "skip_finished=false"), tmp_path)
    assert len(rerun["history"]) == 3  # the default: always train


# -- make table1-smoke ---------------------------------------------------------------------------
@pytest.mark.slow
def test_make_table1_smoke(tmp_path, data_root):
    from conftest import require_files

    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    out = tmp_path / "smoke"
    env = {**os.environ, "VGAE_TOOLKIT_DATA": str(data_root)}
    proc = subprocess.run(["make", "--no-print-directory", "table1-smoke", f"TABLE1_SMOKE={out}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert runs == sorted(f"{row}_cora_s0" for row in ["sc", "dw", *AUTOENCODER_ROWS])
    report = (out / "results.md").read_text()
    for row in ("SC", "DW", "GAE*", "VGAE*", "GAE", "VGAE"):
        assert f"| {row} " in report
    # one seed per cell: each CSV mean is that run's test number x100, and the TeX has the same cells
    import pandas as pd

    from vgae_toolkit.report import row_name

    table = pd.read_csv(out / "results.csv").set_index(["row", "dataset", "metric"])
    tex = (out / "results.tex").read_text()
    for path in out.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        row = row_name(metrics["model"], metrics.get("features"))
        for metric in ("auc", "ap"):
            cell = table.loc[(row, "cora", metric)]
            assert cell["n"] == 1 and cell["mean"] == pytest.approx(100 * metrics[f"test_{metric}"]), (row, metric)
            assert f"{cell['mean']:.1f}" in tex
    assert len(table) == 2 * 6


# -- figures -------------------------------------------------------------------------------------
def test_figures_from_finished_runs_without_retraining(tmp_path):
    from matplotlib.image import imread

    from vgae_toolkit.plots import graph as plots_graph

    for model, knobs in [("vgae", ["trainer.epochs=5"]), ("spectral", ["model.dim=7"])]:
        run(compose_cfg(f"model={model}", *SBM, *knobs), tmp_path / "sweep" / f"{model}_sbm_s0")
    written = plots_graph.write_figures([tmp_path / "sweep"], tmp_path / "figs", seed=0, tsne_dataset="sbm")
    assert sorted(p.name for p in written) == ["figure1_latent_sbm.png", "roc_pr_sbm.png"]
    for path in written:
        assert imread(path).shape[0] > 300 and path.stat().st_size < 1 << 20
    # the rebuilt model scores the test pairs exactly as the finished run did
    for model in ("spectral", "vgae"):
        task, fitted = plots_graph.load_run(tmp_path / "sweep" / f"{model}_sbm_s0")
        metrics = json.loads((tmp_path / "sweep" / f"{model}_sbm_s0" / "metrics.json").read_text())
        assert task.evaluate(fitted, "test")["test_auc"] == metrics["test_auc"]
