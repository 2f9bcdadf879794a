"""What the trainer and the run promise: the selected weights are the ones tested, knobs do what they say."""
import json

import pytest
import torch
from torch import nn

from helpers import compose_cfg
from vgae_toolkit.checkpoint import load_checkpoint
from vgae_toolkit.models.graph import GraphAutoEncoder
from vgae_toolkit.builders import build_link_task, build_model
from vgae_toolkit.run import run
from vgae_toolkit.tasks.link import LinkPredictionTask
from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.trainer import Trainer


class Walker(nn.Module):
    """One weight pulled towards 10 by its loss; records the mode it was in at each call."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.modes: list[str] = []

    def loss(self, batch):
        self.modes.append("train" if self.training else "eval")
        value = ((self.w - 10.0) ** 2).sum()
        return {"loss": value}


def scripted(values):
    """An ``evaluate`` whose validation AP follows ``values``, one per call."""
    calls = iter(values)
    return lambda model: {"val_ap": next(calls)}


def snapshots(store):
    return lambda epoch, record, model: store.append(model.w.detach().clone())


def test_select_best_restores_the_best_epochs_weights():
    model, seen = Walker(), []
    fit = Trainer(epochs=6, lr=0.1, optimizer="sgd", select="best", progress=False, callbacks=[snapshots(seen)]).fit(
        model, [None], scripted([0.2, 0.5, 0.9, 0.4, 0.3, 0.1]))
    assert len({float(w) for w in seen}) == 6  # the weight moved every epoch: the epochs are distinguishable
    assert fit.selected_epoch == fit.best_epoch == 3 and fit.selected["val_ap"] == 0.9
    assert torch.equal(model.w.detach(), seen[2])  # the model now holds epoch 3's weights
    assert torch.equal(fit.last_state["w"], seen[5]) and torch.equal(fit.best_state["w"], seen[2])


def test_select_last_keeps_the_last_weights():
    model, seen = Walker(), []
    fit = Trainer(epochs=4, lr=0.1, optimizer="sgd", select="last", progress=False, callbacks=[snapshots(seen)]).fit(
        model, [None], scripted([0.9, 0.1, 0.1, 0.1]))
    assert fit.selected_epoch == 4 and torch.equal(model.w.detach(), seen[3])


def test_run_tests_the_best_weights_not_the_last(tmp_path, monkeypatch):
    # validation AP scripted to peak at epoch 2 of 6; the test split is scored for real
    real = LinkPredictionTask.evaluate
    calls = iter([0.5, 0.9, 0.6, 0.6, 0.6, 0.6])

    def evaluate(self, model, split="val"):
        return {"val_ap": next(calls), "val_auc": 0.5} if split == "val" else real(self, model, split)

    monkeypatch.setattr(LinkPredictionTask, "evaluate", evaluate)
    cfg = compose_cfg("dataset=sbm", "dataset.loader.num_nodes=200", "trainer.epochs=6", "trainer.progress=false",
                      "trainer.select=best")
    metrics = run(cfg, tmp_path)
    assert metrics["selected_epoch"] == 2 and metrics["val_ap"] == 0.9
    task = build_link_task(cfg)  # the same graph and split again
    scores = {}
    for which in ("best", "last"):
        model = build_model(cfg.model, task)
        model.load_state_dict(load_checkpoint(tmp_path / f"{which}.pt")["state_dict"])
        scores[which] = real(task, model, "test")["test_auc"]
    assert scores["best"] != scores["last"]  # the two epochs are told apart on the test pairs
    assert metrics["test_auc"] == scores["best"]
    assert json.loads((tmp_path / "metrics.json").read_text())["test_auc"] == scores["best"]


@pytest.mark.parametrize("every, expected", [(1, [1, 2, 3, 4, 5, 6, 7]), (3, [3, 6, 7]), (10, [7])])
def test_eval_every_evaluates_on_its_epochs_and_the_last(every, expected):
    model, evaluated = Walker(), []

    def evaluate(m):
        evaluated.append(len(m.modes))
        return {"val_ap": 0.0}

    fit = Trainer(epochs=7, eval_every=every, progress=False).fit(model, [None], evaluate)
    assert [r["epoch"] for r in fit.history if "val_ap" in r] == expected
    assert evaluated == expected  # after that epoch's step


def test_training_steps_run_in_train_mode_and_evaluation_in_eval_mode():
    class Mode(Walker):
        def __init__(self):
            super().__init__()
            self.eval_modes = []

    model = Mode()
    Trainer(epochs=3, progress=False).fit(model, [None], lambda m: model.eval_modes.append(m.training) or {})
    assert model.modes == ["train"] * 3 and model.eval_modes == [False] * 3


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_weight_decay_is_applied(decay):
    class Flat(nn.Module):  # zero loss gradient: only the decay moves the weight
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.full((1,), 2.0))

        def loss(self, batch):
            return {"loss": 0.0 * self.w.sum()}

    model = Flat()
    Trainer(epochs=3, lr=0.1, optimizer="sgd", weight_decay=decay, progress=False).fit(model, [None])
    # SGD with L2 decay: w <- w - lr * decay * w each step
    assert model.w.item() == pytest.approx(2.0 * (1 - 0.1 * decay) ** 3, rel=1e-6)


def test_dropout_acts_in_training_only():
    task = LinkPredictionTask(make_sbm(num_nodes=100, seed=0), split_seed=0)
    torch.manual_seed(0)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=False, dropout=0.5)
    model.train()
    assert not torch.equal(model.encode(task.batch).mu, model.encode(task.batch).mu)
    model.eval()
    assert torch.equal(model.encode(task.batch).mu, model.encode(task.batch).mu)
    plain = GraphAutoEncoder(**task.model_kwargs(), variational=False, dropout=0.0).train()
    assert torch.equal(plain.encode(task.batch).mu, plain.encode(task.batch).mu)


def test_normalize_features_row_normalises_and_only_when_asked():
    data = make_sbm(num_nodes=100, seed=0)
    data.x = (data.x > 1.0).float()  # bag-of-words-like: non-negative counts
    data.x[:10] = 0.0  # and some empty rows, which stay empty
    raw = LinkPredictionTask(data, split_seed=0, normalize_features=False).x
    normed = LinkPredictionTask(data, split_seed=0, normalize_features=True).x
    assert torch.equal(raw, data.x)
    rows = raw.sum(dim=1) != 0
    assert 0 < int(rows.sum()) < 100
    assert not torch.allclose(raw.sum(dim=1)[rows], torch.ones(int(rows.sum())))
    torch.testing.assert_close(normed.sum(dim=1)[rows], torch.ones(int(rows.sum())))
    torch.testing.assert_close(normed[rows], raw[rows] / raw[rows].sum(dim=1, keepdim=True))
    assert torch.equal(normed[~rows], raw[~rows])
