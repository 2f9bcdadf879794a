"""What a run directory already holds, and what a new run into it may do.

A finished run (``metrics.json`` with ``"status": "complete"``) is never overwritten by another
config; a finished run of the same config is returned by ``skip_finished``; an interrupted run
of the same config is continued from its ``last.pt``. Configs are compared without the keys that
do not change a run's result (:data:`vgae_toolkit.schema.RESULT_NEUTRAL_KEYS`).
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


def config_diff(old, new) -> list[str]:
    """The keys whose values change the result, as ``"dotted.key: old -> new"``, sorted.

    Args:
        old, new (dict): resolved configs (``OmegaConf.to_container``); anything else counts as empty.
    """
    old, new = (_flatten(c) if isinstance(c, dict) else {} for c in (old, new))
    keys = sorted(k for k in old.keys() | new.keys() if result_key(k))
    return [f"{k}: {old.get(k, _ABSENT)!r} -> {new.get(k, _ABSENT)!r}" for k in keys
            if old.get(k, _ABSENT) != new.get(k, _ABSENT)]


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
    try:
        ckpt = load_checkpoint(Path(out) / "last.pt")
    except DataError as err:
        log.warning("%s: cannot resume (%s): starting afresh", out, err)
        return None
    if "resume" not in ckpt:  # abandoned in the middle of a step: the weights alone cannot continue
        log.warning("%s: the interrupted run left no state to resume from: starting afresh", out)
        return None
    log.info("%s: resuming an interrupted run after epoch %d", out, ckpt["resume"]["epoch"])
    return {**ckpt["resume"], "model": ckpt["state_dict"]}
