"""Fit strategies other than gradient descent (``trainer=closed_form``).

The gradient :class:`~vgae_toolkit.trainer.Trainer` stays model-agnostic; a model that is fitted
in one shot (an eigendecomposition, a skip-gram run) gets this strategy instead, with the same
``fit(model, batches, evaluate) -> FitResult`` contract, so ``run()`` and ``metrics.json`` do not
tell the two apart.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from tqdm.auto import tqdm

from vgae_toolkit.errors import ConfigError
from vgae_toolkit.trainer import FitResult


class ClosedFormFit:
    """Calls ``model.fit(batch)`` on the first training batch, then evaluates validation once.

    The result is recorded as epoch 1 of the history, so ``selected_epoch`` is 1 and the
    validation numbers sit where the trainer puts them.

    Args:
        select (str): ``last`` or ``best``; with a single fit both keep it (accepted so that
            ``metrics.json`` records the same keys as gradient runs).
        progress (bool): show a progress bar over the fit and the validation pass.
        callbacks (list): callables ``f(epoch, record, model)`` run once after the fit.
    """

    def __init__(self, *, select: str = "last", progress: bool = True,
                 callbacks: list[Callable[[int, dict, nn.Module], None]] | None = None) -> None:
        if select not in ("last", "best"):
            raise ValueError(f"trainer.select: expected 'last' or 'best', got {select!r}")
        self.select, self.progress = select, progress
        self.callbacks = list(callbacks or [])

    def fit(self, model: nn.Module, batches: Iterable[Any],
            evaluate: Callable[[nn.Module], dict[str, float]] | None = None) -> FitResult:
        if not callable(getattr(model, "fit", None)):
            raise ConfigError(f"trainer=closed_form needs a model with fit(batch); {type(model).__name__} is "
                              "trained by gradient steps: use trainer=default")
        bar = tqdm(total=2, desc=f"fit {type(model).__name__}", disable=not self.progress, leave=False)
        start = time.perf_counter()
        model.fit(next(iter(batches)))  # the training graph: one full batch
        seconds = time.perf_counter() - start
        bar.update()
        model.eval()
        record = {"epoch": 1, **(evaluate(model) if evaluate is not None else {})}
        bar.update()
        bar.close()
        for callback in self.callbacks:
            callback(1, record, model)
        return FitResult(history=[record], selected_epoch=1, selected=dict(record), train_seconds=seconds,
                         epochs_done=1)
