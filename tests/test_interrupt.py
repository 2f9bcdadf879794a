"""Runs stopped by SIGINT / SIGTERM save their state, and a re-run into the folder continues them exactly."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import compose_cfg

from vgae_toolkit.run import run

SBM = ["dataset=sbm", "dataset.loader.num_nodes=100", "trainer.progress=false", "trainer.epochs=10"]
DIGITS = ["model=vae", "dataset=digits", "dataset.batch_size=400", "dataset.iw_samples=0", "model.hidden=[16]",
          "model.latent_dim=2", "model.kl_warmup_epochs=3", "trainer.progress=false", "trainer.epochs=4",
          "trainer.lr=0.001"]


def signal_after(epoch, *signums):
    """A trainer callback that sends this process ``signums`` at the end of epoch ``epoch``."""
    def callback(done, record, model):
        if done == epoch:
            for signum in signums:
                os.kill(os.getpid(), signum)
    return callback


def interrupted(monkeypatch, cfg, folder, callback):
    """Runs ``cfg`` into ``folder`` with ``callback`` added to the task's; returns the exit status."""
    from vgae_toolkit import run as run_module

    built = run_module.TASK_BUILDERS[cfg.dataset.kind]

    def with_callback(c):
        task = built(c)
        own = task.callbacks
        task.callbacks = lambda model: [*own(model), callback]
        return task

    with monkeypatch.context() as patch:
        patch.setitem(run_module.TASK_BUILDERS, cfg.dataset.kind, with_callback)
        with pytest.raises(SystemExit) as stopped:
            run(cfg, folder)
    return stopped.value.code


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(a, b):
    for name in ("last.pt", "best.pt"):
        wa, wb = weights(a / name), weights(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert ma["status"] == mb["status"] == "complete" and ma["history"] == mb["history"]


def test_sigint_saves_state_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    whole = run(compose_cfg(*SBM), tmp_path / "whole")
    cfg = compose_cfg(*SBM)
    folder = tmp_path / "stopped"
    assert interrupted(monkeypatch, cfg, folder, signal_after(4, signal.SIGINT)) == 130
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epoch"] == 4 and metrics["signal"] == "SIGINT"
    assert len(metrics["history"]) == 4 and metrics["resumable"]
    saved = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)  # plain data only
    state = saved["resume"]
    assert state["epoch"] == 4 and len(state["history"]) == 4 and state["optimizer"]["state"]
    assert state["best_state"] is not None and state["best_epoch"] >= 1
    assert state["rng"][0]["torch"].dtype == torch.uint8 and "sampler_generator" in state["batches"]
    resumed = run(compose_cfg(*SBM), folder)
    assert [r["epoch"] for r in resumed["history"]] == list(range(1, 11))
    assert resumed["test_auc"] == whole["test_auc"]
    assert_same_run(tmp_path / "whole", folder)


def test_sigterm_exits_143_and_resumes_with_the_same_negatives(tmp_path, monkeypatch):
    sampled = [*SBM, "model.recon=sampled"]  # fresh negatives every epoch, from the task's own generator
    assert interrupted(monkeypatch, compose_cfg(*sampled), tmp_path / "stopped",
                       signal_after(7, signal.SIGTERM)) == 143
    assert json.loads((tmp_path / "stopped" / "metrics.json").read_text())["epoch"] == 7
    run(compose_cfg(*sampled), tmp_path / "stopped")
    run(compose_cfg(*sampled), tmp_path / "whole")
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_image_run_resumes_exactly(tmp_path, monkeypatch):
    """Mini-batches (their epoch), the model's KL warm-up and the global stream continue where they were."""
    run(compose_cfg(*DIGITS), tmp_path / "whole")
    assert interrupted(monkeypatch, compose_cfg(*DIGITS), tmp_path / "stopped", signal_after(2, signal.SIGINT)) == 130
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["resume"]["batches"] == {"epoch": 2}
    from vgae_toolkit.plots import vae as plots_vae

    plotted, plot = [], plots_vae.plot_elbo_curves
    monkeypatch.setattr(plots_vae, "plot_elbo_curves", lambda history, *a, **k: plotted.append(history) or plot(
        history, *a, **k))
    run(compose_cfg(*DIGITS), tmp_path / "stopped")
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")
    assert [r["epoch"] for r in plotted[0]] == [1, 2, 3, 4]  # the task's own curves cover the whole run


def test_a_stop_within_an_epoch_replays_its_batches(tmp_path, monkeypatch):
    """A stop after step 2 of epoch 2 (4 steps an epoch): the resumed run skips the steps taken."""
    from vgae_toolkit.models.vae import VAE

    run(compose_cfg(*DIGITS), tmp_path / "whole")
    loss, steps = VAE.loss, []

    def counted(self, batch):
        steps.append(1)
        if len(steps) == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return loss(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(VAE, "loss", counted)
        with pytest.raises(SystemExit):
            run(compose_cfg(*DIGITS), tmp_path / "stopped")
    state = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["resume"]
    assert (state["epoch"], state["step"], state["batches"]) == (1, 2, {"epoch": 1})
    run(compose_cfg(*DIGITS), tmp_path / "stopped")
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_a_second_signal_abandons_the_step_and_a_rerun_starts_afresh(tmp_path, monkeypatch, capsys):
    from vgae_toolkit import interrupt

    folder = tmp_path / "stopped"
    monkeypatch.setattr(interrupt, "REPEAT_SECONDS", -1.0)  # the second is not a repeat of the first
    assert interrupted(monkeypatch, compose_cfg(*SBM), folder, signal_after(3, signal.SIGINT, signal.SIGINT)) == 130
    assert "Traceback" not in capsys.readouterr().err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and not metrics["resumable"]
    assert "resume" not in torch.load(folder / "last.pt", weights_only=True)  # the weights as they were
    again = run(compose_cfg(*SBM), folder)
    assert len(again["history"]) == 10
    run(compose_cfg(*SBM), tmp_path / "whole")
    assert_same_run(tmp_path / "whole", folder)


def test_a_repeat_of_the_same_signal_still_saves_a_state(tmp_path, monkeypatch):
    """Ctrl-C reaches a process from the terminal and again from its launcher: one request."""
    folder = tmp_path / "stopped"
    assert interrupted(monkeypatch, compose_cfg(*SBM), folder, signal_after(3, signal.SIGINT, signal.SIGINT)) == 130
    assert json.loads((folder / "metrics.json").read_text())["resumable"]


def test_resume_false_starts_afresh(tmp_path, monkeypatch):
    folder = tmp_path / "stopped"
    interrupted(monkeypatch, compose_cfg(*SBM), folder, signal_after(4, signal.SIGINT))
    import vgae_toolkit.run_folder as run_folder

    def no_resume(*args, **kwargs):
        raise AssertionError("resumed although trainer.resume=false")

    monkeypatch.setattr(run_folder, "load_checkpoint", no_resume)
    assert len(run(compose_cfg(*SBM, "trainer.resume=false"), folder)["history"]) == 10


@pytest.mark.slow
def test_ctrl_c_on_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vgae_toolkit", *SBM[:-1], "trainer.epochs=1000000", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / ".hydra" / "config.yaml").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(5)  # into the training loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted by SIGINT" in err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["epoch"] >= 1 and metrics["resumable"]
    assert "resume" in torch.load(run_dir / "last.pt", weights_only=True)
