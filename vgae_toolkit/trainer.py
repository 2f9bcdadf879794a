"""One model-agnostic training loop for every model in the toolkit.

The trainer knows no graphs and no images. A model is an ``nn.Module`` with
``loss(batch) -> {"loss": Tensor, ...}``; the data is any iterable of batches that is
iterated once per epoch (a graph run yields one full batch with fresh negatives, an image
run is a DataLoader); ``evaluate(model) -> {name: float}`` computes the validation numbers
after each epoch. The test split never passes through here.

The model and batches may live on any device; the trainer follows them. When several processes
train together (:mod:`vgae_toolkit.distributed`), each batch is that process's share of the work:
gradients and loss terms are averaged over processes after every backward pass, and the
validation numbers of rank 0 decide for all, so every process keeps the same weights.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vgae_toolkit import distributed
from vgae_toolkit.errors import ConfigError, TrainingError

OPTIMIZERS = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns: per-epoch history and the selected epoch (1-based)."""

    history: list[dict[str, float]] = field(default_factory=list)
    selected_epoch: int = 0
    selected: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    best_epoch: int = 0
    best_state: dict | None = None  # weights at the best ``monitor`` value
    last_state: dict | None = None  # weights after the last epoch


def make_optimizer(cls: type[torch.optim.Optimizer], model: nn.Module, **kwargs) -> torch.optim.Optimizer:
    """``cls`` over the model's parameters, in its fused form where torch has one for them.

    The fused Adam and Adagrad update every parameter in one kernel: the same update up to float
    rounding, at half the cost per step on CPU (it matters for the GAE's two or three weights,
    where the per-parameter loop is most of the step). Other cases fall back to the default form.
    """
    params = list(model.parameters())
    if cls in (torch.optim.Adam, torch.optim.Adagrad) and params and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, **kwargs)


class Trainer:
    """Fits a model by minimising the mean of ``model.loss(batch)["loss"]`` over batches.

    Args:
        epochs (int): passes over the training data (VGAE paper: 200).
        lr (float): learning rate (VGAE paper: Adam, 0.01).
        optimizer (str): ``adam``, ``adagrad`` or ``sgd``.
        weight_decay (float): L2 penalty handed to the optimiser.
        select (str): which epoch's weights are kept and reported: ``last`` (as the
            papers report) or ``best`` (highest ``monitor`` on validation).
        monitor (str): validation key that ``select=best`` maximises, e.g. ``val_ap``.
        eval_every (int): evaluate every this many epochs (and always after the last).
        progress (bool): show a tqdm progress bar.
        callbacks (list): callables ``f(epoch, record, model)`` run after each epoch.
    """

    def __init__(
        self,
        *,
        epochs: int = 200,
        lr: float = 0.01,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        select: str = "last",
        monitor: str = "val_ap",
        eval_every: int = 1,
        progress: bool = True,
        callbacks: list[Callable[[int, dict, nn.Module], None]] | None = None,
    ) -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"trainer.optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if select not in ("last", "best"):
            raise ValueError(f"trainer.select: expected 'last' or 'best', got {select!r}")
        if epochs < 1 or eval_every < 1:
            raise ValueError("trainer.epochs and trainer.eval_every must be at least 1")
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.optimizer_cls = OPTIMIZERS[optimizer]
        self.select, self.monitor, self.eval_every = select, monitor, eval_every
        self.progress = progress
        self.callbacks = list(callbacks or [])

    def fit(
        self,
        model: nn.Module,
        batches: Iterable[Any],
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    ) -> FitResult:
        distributed.broadcast_parameters(model)  # several processes start from rank 0's weights
        opt = make_optimizer(self.optimizer_cls, model, lr=self.lr, weight_decay=self.weight_decay)
        result = FitResult()
        best_score = -math.inf
        start = time.perf_counter()
        show = self.progress and distributed.get_rank() == 0
        bar = tqdm(range(1, self.epochs + 1), disable=not show, desc="train", leave=False, mininterval=0.5)
        for epoch in bar:
            model.train()
            sums: dict[str, float] = {}
            count = 0
            for batch in batches:
                opt.zero_grad(set_to_none=True)
                out = model.loss(batch)
                out["loss"].backward()
                out = distributed.average_gradients(model, out)  # means over processes (as is with one)
                values = {key: float(value.detach()) for key, value in out.items()}
                if not math.isfinite(values["loss"]):  # the same verdict in every process: the loss is averaged
                    last = result.history[-1] if result.history else {}
                    raise TrainingError(
                        f"non-finite loss ({values['loss']}) at epoch {epoch}; last finite epoch: {last or 'none'}",
                        history=result.history,
                    )
                opt.step()
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            record = {"epoch": epoch, **{f"train_{k}": v / max(count, 1) for k, v in sums.items()}}
            if evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
                model.eval()
                with torch.no_grad():
                    record.update(distributed.broadcast(evaluate(model)))  # rank 0's numbers select for all
                if self.monitor not in record and self.select == "best":
                    keys = sorted(k for k in record if k.startswith("val_"))
                    raise ConfigError(f"trainer.monitor={self.monitor} is not a validation metric of this run; "
                                      f"expected one of {keys} (or auto)")
                if record.get(self.monitor, -math.inf) > best_score:
                    best_score = record[self.monitor]
                    result.best_state = copy.deepcopy(model.state_dict())
                    result.best_epoch, best_record = epoch, dict(record)
            result.history.append(record)
            if show:
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"}, refresh=False)
            for callback in self.callbacks:
                callback(epoch, record, model)
        bar.close()
        result.last_state = copy.deepcopy(model.state_dict())
        if self.select == "best" and result.best_state is not None:
            model.load_state_dict(result.best_state)
            result.selected_epoch, result.selected = result.best_epoch, best_record
        else:
            result.selected_epoch, result.selected = self.epochs, dict(result.history[-1])
        result.train_seconds = time.perf_counter() - start
        return result
