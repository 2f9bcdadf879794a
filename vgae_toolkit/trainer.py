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

A stop request (SIGINT or SIGTERM, :mod:`vgae_toolkit.interrupt`) ends a fit after its current step
with the state to continue from; the batches object may carry its own position (``state_dict()``).
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

from vgae_toolkit import distributed, interrupt
from vgae_toolkit.errors import ConfigError, TrainingError
from vgae_toolkit.ops.optim import FusedAdam

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
    best_score: float = -math.inf
    best_record: dict | None = None
    last_state: dict | None = None  # weights after the last epoch
    # Where the fit is: epochs done, then steps, loss sums and batch count of the open epoch.
    epochs_done: int = 0
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    interrupted: bool = False  # stopped on request before the last epoch
    waited: int = 0  # evaluations since the best monitor value (trainer.patience)
    stopped_early: bool = False  # stopped by trainer.patience
    # The state to continue from (weights apart): an interrupted fit's, or a finished one's, which a run
    # with more epochs extends (trainer.extend_from) to the weights it would have reached from the start
    resume: dict | None = None


def make_optimizer(cls: type[torch.optim.Optimizer], model: nn.Module, **kwargs) -> torch.optim.Optimizer:
    """``cls`` over the model's parameters, in its fused form where torch has one for them.

    The fused Adam and Adagrad update every parameter in one kernel: the same update up to float
    rounding, at half the cost per step on CPU (it matters for the GAE's two or three weights,
    where the per-parameter loop is most of the step); Adam's is :class:`~vgae_toolkit.ops.optim.FusedAdam`,
    which calls that kernel without ``Optimizer.step``'s bookkeeping. Other cases fall back to the default form.
    """
    params = list(model.parameters())
    if cls in (torch.optim.Adam, torch.optim.Adagrad) and params and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
        try:  # Adam: the same fused update, called directly (vgae_toolkit.ops.optim)
            return FusedAdam(params, **kwargs) if cls is torch.optim.Adam else cls(params, fused=True, **kwargs)
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
        grad_clip (float): rescale the gradients so that their global norm is at most this before each
            step; ``0`` = off (MaskGAE, Li et al. 2023: 1.0).
        patience (int): stop after this many evaluations in a row without a new best ``monitor``
            value; ``0`` = never stop early (MaskGAE: 20, evaluating every 10 epochs).
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
        grad_clip: float = 0.0,
        patience: int = 0,
        progress: bool = True,
        callbacks: list[Callable[[int, dict, nn.Module], None]] | None = None,
    ) -> None:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"trainer.optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if select not in ("last", "best"):
            raise ValueError(f"trainer.select: expected 'last' or 'best', got {select!r}")
        if epochs < 1 or eval_every < 1:
            raise ValueError("trainer.epochs and trainer.eval_every must be at least 1")
        if grad_clip < 0 or patience < 0:
            raise ValueError("trainer.grad_clip and trainer.patience must be non-negative")
        self.grad_clip, self.patience = float(grad_clip), int(patience)
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.optimizer_cls = OPTIMIZERS[optimizer]
        self.select, self.monitor, self.eval_every = select, monitor, eval_every
        self.progress = progress
        self.callbacks = list(callbacks or [])
        self.current: FitResult | None = None  # the fit in progress (where an abandoned one got to)

    def fit(
        self,
        model: nn.Module,
        batches: Iterable[Any],
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        resume: dict | None = None,
    ) -> FitResult:
        """Trains for ``epochs``; a stop request (:mod:`vgae_toolkit.interrupt`) ends it after a step.

        Args:
            resume (dict, optional): an interrupted fit's :func:`~vgae_toolkit.interrupt.training_state`
                with its weights under ``"model"``: the fit continues from there.
        """
        distributed.broadcast_parameters(model)  # several processes start from rank 0's weights
        opt = make_optimizer(self.optimizer_cls, model, lr=self.lr, weight_decay=self.weight_decay)
        result = self.current = FitResult()
        if resume is not None:
            interrupt.restore(resume, model, opt, batches, result)
        start = time.perf_counter() - result.train_seconds
        size = len(batches) if hasattr(batches, "__len__") else None  # steps per epoch, where known
        show = self.progress and distributed.get_rank() == 0
        bar = tqdm(range(result.epochs_done + 1, self.epochs + 1), disable=not show, desc="train", leave=False,
                   mininterval=0.5, initial=result.epochs_done, total=self.epochs)
        for epoch in bar:
            if self.patience and result.waited >= self.patience:  # an extended fit that patience had stopped
                result.stopped_early = True
                break
            epoch_start = interrupt.batches_state(batches)  # an interrupted epoch is replayed from here
            if interrupt.stop_requested():
                result.interrupted = True
                break
            model.train()
            for index, batch in enumerate(batches):
                if index < result.step:  # taken before an interruption: skipped, the stream replayed
                    continue
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
                if self.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                opt.step()
                for key, value in values.items():
                    result.sums[key] = result.sums.get(key, 0.0) + value
                result.count, result.step = result.count + 1, result.step + 1
                if index + 1 != size and interrupt.stop_requested():  # at an epoch's end: stop after it
                    result.interrupted = True
                    break
            if result.interrupted:
                break
            record = {"epoch": epoch, **{f"train_{k}": v / max(result.count, 1) for k, v in result.sums.items()}}
            if evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
                model.eval()
                with torch.no_grad():
                    record.update(distributed.broadcast(evaluate(model)))  # rank 0's numbers select for all
                if self.monitor not in record and self.select == "best":
                    keys = sorted(k for k in record if k.startswith("val_"))
                    raise ConfigError(f"trainer.monitor={self.monitor} is not a validation metric of this run; "
                                      f"expected one of {keys} (or auto)")
                if record.get(self.monitor, -math.inf) > result.best_score:
                    result.best_score = record[self.monitor]
                    result.best_state = copy.deepcopy(model.state_dict())
                    result.best_epoch, result.best_record = epoch, dict(record)
                    result.waited = 0
                else:
                    result.waited += 1
            result.history.append(record)
            if show:
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"}, refresh=False)
            for callback in self.callbacks:
                callback(epoch, record, model)
            result.epochs_done, result.step, result.count, result.sums = epoch, 0, 0, {}
            if self.patience and result.waited >= self.patience:
                result.stopped_early = True
                break
        bar.close()
        result.train_seconds = time.perf_counter() - start
        if result.interrupted:
            result.resume = interrupt.training_state(opt, result, epoch_start)
            return result
        # where the next epoch would start: a run with more epochs continues from here (trainer.extend_from)
        result.resume = interrupt.training_state(opt, result, interrupt.batches_state(batches))
        result.last_state = copy.deepcopy(model.state_dict())
        if self.select == "best" and result.best_state is not None:
            model.load_state_dict(result.best_state)
            result.selected_epoch, result.selected = result.best_epoch, result.best_record
        else:
            result.selected_epoch, result.selected = result.epochs_done, dict(result.history[-1])
        return result
