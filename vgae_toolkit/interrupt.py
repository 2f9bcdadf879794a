"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption), and resuming it.

While :func:`catch_signals` is active, the first SIGINT or SIGTERM only raises a flag: the trainer
finishes the step it is in, stops (:func:`stop_requested`) and hands back a :func:`training_state`
(optimiser, epoch, best-so-far, history, random streams, the batches' position) that ``run()``
saves in ``last.pt``; :func:`restore` continues from it with the same weights, bit for bit, as a
run that was never stopped. Another signal, a second later or more, abandons the step at once (``KeyboardInterrupt``);
the weights are then saved as they are, without a state to resume from.

A state holds tensors, numbers, strings, lists and dicts only, so a checkpoint holding it still
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vgae_toolkit import distributed

# The shell's convention: 128 + the signal's number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
# A terminal's Ctrl-C reaches a whole process group, and a launcher (torchrun, a scheduler) forwards
# it to its workers as well: a repeat within this many seconds is the same request, not a second one.
REPEAT_SECONDS = 1.0
_received: list[tuple[int, float]] = []  # (signal, time) received while catch_signals() is active
_shield = [False]  # true while files are written: no signal may cut them short


def _handler(signum: int, frame) -> None:
    now = time.monotonic()
    _received.append((signum, now))
    if now - _received[0][1] > REPEAT_SECONDS and not _shield[0]:  # asked again: do not wait for the step
        raise KeyboardInterrupt


@contextmanager
def shielded() -> Iterator[None]:
    """Signals received meanwhile are only recorded, never raised (around writing results)."""
    before, _shield[0] = _shield[0], True
    try:
        yield
    finally:
        _shield[0] = before


@contextmanager
def catch_signals() -> Iterator[None]:
    """Turns SIGINT and SIGTERM into a stop request for the duration (main thread only)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in EXIT_CODES}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def received() -> int | None:
    """The first signal received under :func:`catch_signals`, else ``None``."""
    return _received[0][0] if _received else None


def stop_requested() -> bool:
    """Whether to stop after the current step; with several processes, true for all once one is asked."""
    asked = bool(_received)
    if distributed.get_world_size() == 1:
        return asked
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([float(asked)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every process stops at the same step
    return bool(flag.item())


# -- the state of an interrupted fit ---------------------------------------------------------------
def rng_states() -> dict:
    """The global random streams (torch, CUDA where in use, numpy, Python) as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def set_rng_states(state: dict) -> None:
    """Sets the streams that :func:`rng_states` read."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def batches_state(batches: Any) -> dict:
    """Where the training batches are: their ``state_dict()``, or the epoch of those with ``set_epoch``."""
    if hasattr(batches, "state_dict"):
        return batches.state_dict()
    if hasattr(batches, "set_epoch") and isinstance(getattr(batches, "epoch", None), int):
        return {"epoch": batches.epoch}
    return {}


def load_batches_state(batches: Any, state: dict) -> None:
    if hasattr(batches, "load_state_dict"):
        batches.load_state_dict(state)
    elif "epoch" in state:
        batches.set_epoch(state["epoch"])


def _cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cpu(v) for v in value]
    return value


def training_state(optimizer: torch.optim.Optimizer, result, epoch_start: dict) -> dict:
    """What a fit stopped after a step needs to continue (the weights are saved beside it).

    Args:
        optimizer (Optimizer): the fit's optimiser.
        result (FitResult): the fit so far (epochs and steps done, the open epoch's sums, best, history).
        epoch_start (dict): :func:`batches_state` at the start of the open epoch, replayed on resume.
    """
    return {"optimizer": _cpu(optimizer.state_dict()), "epoch": result.epochs_done, "step": result.step,
            "sums": dict(result.sums), "count": result.count, "history": _cpu(result.history),
            "best_state": _cpu(result.best_state), "best_score": float(result.best_score),
            "best_epoch": result.best_epoch, "best_record": result.best_record, "waited": result.waited,
            "train_seconds": result.train_seconds, "rng": _every_process(rng_states()), "batches": epoch_start}


def _every_process(state: dict) -> list[dict]:
    """``state`` of every process, by rank (processes may draw from streams of their own)."""
    if distributed.get_world_size() == 1:
        return [state]
    states = [None] * distributed.get_world_size()
    dist.all_gather_object(states, state)
    return states


def restore(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, batches: Any, result) -> None:
    """Loads a :func:`training_state` (and ``state["model"]``, the weights) into a fresh fit."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    load_batches_state(batches, state["batches"])
    result.epochs_done, result.step, result.count = int(state["epoch"]), int(state["step"]), int(state["count"])
    result.sums, result.history = dict(state["sums"]), list(state["history"])
    result.best_state, result.best_epoch = state["best_state"], int(state["best_epoch"])
    result.best_score = float(state.get("best_score", -math.inf))
    result.waited = int(state.get("waited", 0))
    result.best_record, result.train_seconds = state["best_record"], float(state["train_seconds"])
    if hasattr(model, "set_epoch"):  # an epoch-dependent schedule (KL warm-up) continues where it was
        model.set_epoch(result.epochs_done)
    rank, streams = distributed.get_rank(), state["rng"]
    # last: nothing above may draw from the streams; a different number of processes takes rank 0's
    set_rng_states(streams[rank] if len(streams) == distributed.get_world_size() else streams[0])
