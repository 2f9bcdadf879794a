"""What a run directory already holds, and what a new run into it may do.

A finished run (``metrics.json`` with ``"status": "complete"``) is never overwritten by another
config; a finished run of the same config is returned by ``skip_finished``; an interrupted run
of the same config is continued from its ``last.pt``; a finished run in another folder is extended to
more epochs where ``trainer.extend_from`` names it. Configs are compared without the keys that do not
change a run's result (:data:`vgae_toolkit.schema.RESULT_NEUTRAL_KEYS`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vgae_toolkit.checkpoint import load_checkpoint
from vgae_toolkit.errors import DataError
from vgae_toolkit.schema import result_key

log = logging.getLogger(__name__)

_ABSENT = "<absent>"


def read_metrics(out: Path) -> dict | None:
    """``out/metrics.json`` as a dict, or ``None`` when it is missing or unreadable."""
    try:
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict) and node:
        return {key: value for k, v in node.items() for key, value in _flatten(v, f"{prefix}{k}.").items()}
    return {prefix.rstrip("."): node}


def changed_keys(old, new) -> dict[str, tuple]:
    """``{dotted key: (old value, new value)}`` for the keys whose values differ and change the result.

    Args:
        old, new (dict): resolved configs (``OmegaConf.to_container``); anything else counts as empty.
    """
    old, new = (_flatten(c) if isinstance(c, dict) else {} for c in (old, new))
    keys = sorted(k for k in old.keys() | new.keys() if result_key(k))
    return {k: (old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in keys if old.get(k, _ABSENT) != new.get(k, _ABSENT)}


def shown(changes: dict[str, tuple]) -> list[str]:
    """:func:`changed_keys`' result as ``"dotted.key: old -> new"`` lines."""
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]


def config_diff(old, new) -> list[str]:
    """The keys whose values change the result, as ``"dotted.key: old -> new"``, sorted (see :func:`changed_keys`)."""
    return shown(changed_keys(old, new))


def folder_verdict(out: Path, cfg: DictConfig) -> tuple[str, object] | None:
    """What a finished run in ``out`` means for ``cfg``: ``("skip", metrics)``, ``("refuse", reason)`` or ``None``.

    ``skip`` where it is a run of the same config and ``skip_finished`` is set; ``refuse`` where it
    is a run of another config (the folder is never overwritten); ``None`` otherwise (no run, a
    failed or interrupted one, or a re-run of the same config asked for).
    """
    metrics = read_metrics(out)
    if metrics is None or metrics.get("status") != "complete":
        return None
    changed = config_diff(metrics.get("config"), OmegaConf.to_container(cfg, resolve=True))
    if changed:
        shown = "; ".join(changed[:12]) + (f"; and {len(changed) - 12} more" if len(changed) > 12 else "")
        return "refuse", (f"{out} holds a finished run of another config ({shown}); it is never overwritten: "
                          "choose another output folder (hydra.run.dir / hydra.sweep.dir) or remove that one")
    return ("skip", metrics) if cfg.get("skip_finished") else None


def interrupted_state(out: Path, cfg: DictConfig) -> dict | None:
    """The state of an interrupted run of the same config in ``out`` to continue from, else ``None``.

    The state is ``last.pt``'s ``"resume"`` entry with the weights under ``"model"``.
    """
    metrics = read_metrics(out)
    if metrics is None or metrics.get("status") != "interrupted":
        return None
    if config_diff(metrics.get("config"), OmegaConf.to_container(cfg, resolve=True)):
        log.warning("%s holds an interrupted run of another config: starting afresh", out)
        return None
    state = saved_state(out)
    if isinstance(state, str):  # e.g. abandoned in the middle of a step: the weights alone cannot continue
        log.warning("%s: cannot resume (%s): starting afresh", out, state)
        return None
    log.info("%s: resuming an interrupted run after epoch %d", out, state["epoch"])
    return state


def saved_state(folder: Path) -> dict | str:
    """The training state saved in ``folder/last.pt`` with the weights under ``"model"``, or why there is none."""
    try:
        ckpt = load_checkpoint(Path(folder) / "last.pt")
    except DataError as err:
        return str(err)
    if not isinstance(ckpt.get("resume"), dict):
        return "its last.pt holds weights but no training state to continue from"
    if not isinstance(ckpt["resume"].get("epoch"), int):
        return "the training state in its last.pt has no epoch count"
    return {**ckpt["resume"], "model": ckpt["state_dict"]}


# What may differ between a finished run and a run that extends it: the epoch budget, and the name the
# model goes by (a label: zoo row ``best`` is MaskGAE edge masking with more epochs).
EXTENDABLE_KEYS = ("trainer.epochs", "model.name")


def extension_state(source: Path, cfg: DictConfig) -> dict | None:
    """The end state of a finished run in ``source`` that ``cfg`` extends to more epochs, else ``None``.

    ``cfg`` extends it when the two configs differ in :data:`EXTENDABLE_KEYS` alone, ``cfg`` has at
    least the epochs of the finished run, and continuing gives the run ``cfg`` would make from the
    start: the finished run ran all its epochs with its last one a scheduled evaluation (it was not
    evaluated only because it was last), or patience stopped it (then the extension stops there too).
    Otherwise the run trains from the start, and the log says why.
    """
    metrics = read_metrics(source)
    if metrics is None or metrics.get("status") != "complete":
        log.info("trainer.extend_from: %s holds no finished run: training from the first epoch", source)
        return None
    changed = changed_keys(metrics.get("config"), OmegaConf.to_container(cfg, resolve=True))
    other = shown({k: v for k, v in changed.items() if k not in EXTENDABLE_KEYS})
    if other:
        log.warning("trainer.extend_from: %s is a run of another config (%s): training from the first epoch",
                    source, "; ".join(other[:6]))
        return None
    old_epochs, new_epochs = changed.get("trainer.epochs", (cfg.trainer.epochs, cfg.trainer.epochs))
    done, every = metrics.get("epochs_run"), int(cfg.trainer.get("eval_every", 1))
    stopped = isinstance(done, int) and isinstance(old_epochs, int) and done < old_epochs
    why = None
    if not isinstance(old_epochs, int) or old_epochs > new_epochs:
        why = f"it ran trainer.epochs={old_epochs!r}, more than this run's {new_epochs}"
    elif not stopped and old_epochs < new_epochs and old_epochs % every:
        why = (f"its last epoch ({old_epochs}) was evaluated only because it was last "
               f"(trainer.eval_every={every}), which a longer run does not do")
    state = saved_state(source) if why is None else why  # no state: e.g. a run of an earlier version
    if isinstance(state, str):
        log.warning("trainer.extend_from: %s cannot be extended (%s): training from the first epoch", source, state)
        return None
    log.info("%s: extending a finished run of %d epochs to %d", source, state["epoch"], new_epochs)
    return state
