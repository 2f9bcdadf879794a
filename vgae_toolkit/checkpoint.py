"""Checkpoints that load without executing code, written atomically.

A checkpoint is a plain dict of tensors, strings and numbers: the model's ``state_dict``,
the resolved config as YAML and the metrics at save time; the ``last.pt`` of an interrupted run
also holds what resuming it needs (optimiser state, random streams) under ``"resume"``. It is loaded with
``torch.load(..., weights_only=True)``, which refuses any pickled object that is not
plain data, so a crafted file cannot run code.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vgae_toolkit.errors import DataError

FORMAT_VERSION = 1


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | Path, model: nn.Module | dict, cfg: DictConfig, metrics: dict | None = None,
                    resume: dict | None = None) -> Path:
    """Save weights (a model or its ``state_dict``), the resolved config and metrics atomically.

    Args:
        resume (dict, optional): an interrupted fit's state (:func:`vgae_toolkit.interrupt.training_state`),
            stored under ``"resume"``: tensors, numbers, strings, lists and dicts only.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    payload = {
        "format": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "config": OmegaConf.to_yaml(cfg, resolve=True),
        "metrics": _plain(metrics or {}),
    }
    if resume is not None:
        payload["resume"] = resume
    return atomic_save(payload, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint safely; returns ``{"state_dict", "config" (DictConfig), "metrics"}``, and
    ``"resume"`` (a dict) for the ``last.pt`` of an interrupted run.

    Raises:
        DataError: the file is missing, truncated, not a checkpoint, or holds anything but plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path}: file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's own text advises a load that runs code: never repeat it
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise DataError(f"checkpoint {path}: refused or unreadable: it holds pickled objects{what} other than "
                        f"tensors, numbers and strings, and is never loaded in a way that could run them") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"checkpoint {path}: refused or unreadable ({type(err).__name__}: {str(err)[:300]})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "state_dict" not in payload:
        raise DataError(f"checkpoint {path}: not a vgae-toolkit checkpoint (format {FORMAT_VERSION} expected)")
    try:  # YAML text, parsed without building anything (vgae_toolkit.registry checks it before use)
        if isinstance(payload.get("config"), str):
            check_plain_yaml(payload["config"], path)
        config = OmegaConf.create(payload["config"]) if isinstance(payload.get("config"), str) else None
    except DataError:
        raise
    except Exception as err:  # any YAML or OmegaConf error: the file is bad data
        raise DataError(f"checkpoint {path}: its stored config cannot be parsed ({str(err)[:300]})") from err
    if not isinstance(config, DictConfig):
        raise DataError(f"checkpoint {path}: its stored config is not a mapping of YAML text")
    loaded = {"state_dict": payload["state_dict"], "config": config, "metrics": payload.get("metrics", {})}
    if isinstance(payload.get("resume"), dict):
        loaded["resume"] = payload["resume"]
    return loaded


# A stored config is a few kilobytes; anything far larger is not one the toolkit wrote.
MAX_CONFIG_CHARS = 1 << 20


def check_plain_yaml(text: str, path: Path) -> None:
    """Refuse YAML that a resolved config never holds: aliases (``*name``) and oversized text.

    Aliases are expanded when the text is built into a config, so a few lines of nested aliases
    grow into billions of nodes and the load never ends. The toolkit writes resolved configs as
    plain YAML without anchors, so any alias means the text was made elsewhere. The YAML events
    are read without constructing anything.
    """
    import yaml

    if len(text) > MAX_CONFIG_CHARS:
        raise DataError(f"checkpoint {path}: its stored config is {len(text)} characters long; a run's config "
                        f"is at most {MAX_CONFIG_CHARS} (refused unread)")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise DataError(f"checkpoint {path}: its stored config uses a YAML alias (*{event.anchor}); "
                                f"a run's config is plain YAML without anchors or aliases (refused unread)")
    except yaml.YAMLError as err:
        raise DataError(f"checkpoint {path}: its stored config cannot be parsed ({str(err)[:300]})") from err


def _plain(value):
    """Numbers, strings, lists and dicts only (what ``weights_only`` loading accepts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):  # exact builtins: subclasses (e.g. torch's version string) are refused on load
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
