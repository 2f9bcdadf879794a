"""Builders from a composed config to the objects of a run: the task, the model, the random seeds.

Shared by :func:`vgae_toolkit.run.run` (training) and :mod:`vgae_toolkit.predict` (scoring with a
checkpoint), so that both build the same task and the same model from the same config.
"""
from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from vgae_toolkit.errors import ConfigError, ToolkitError

# Keys of a model config that describe it rather than being constructor arguments.
MODEL_META_KEYS = ("name", "kind")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def data_root(cfg: DictConfig) -> Path:
    # Hydra does not change the working directory (hydra.job.chdir=false), so a relative
    # data_dir means relative to where the command was started.
    return Path(os.path.expanduser(str(cfg.paths.data_dir))).absolute()


def build(node, key: str, **kwargs):
    """``instantiate`` that lets the toolkit's own errors through and names the config key."""
    try:
        return instantiate(node, **kwargs, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, ToolkitError):
            raise err.__cause__ from None
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err.__cause__ or ""))
        if unknown:
            raise ConfigError(f"{key}.{unknown.group(1)}: unknown key; {key} takes "
                              f"{', '.join(_parameters(node))}") from None
        raise ConfigError(f"{key}: {err}") from err


def _parameters(node) -> list[str]:
    """The keyword parameters of the callable a config node names (for error messages)."""
    import inspect

    from hydra.utils import get_method

    try:
        target = get_method(node["_target_"]) if isinstance(node["_target_"], str) else node["_target_"]
        params = inspect.signature(target).parameters.values()
    except Exception:  # noqa: BLE001 - only for a message: say less rather than fail
        return ["(see its config file)"]
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]


# The task modules are imported when a task of their kind is built: they import this module's
# helpers, and a graph run need not load the image task's modules (nor the other way round).
def build_link_task(cfg: DictConfig, data=None):
    """The link task of ``cfg``: its dataset's loader builds the graph, unless ``data`` is given
    (a ``torch_geometric.data.Data``, or a ready-made split: :func:`~vgae_toolkit.graph_input.given_split`)."""
    from vgae_toolkit.graph_input import given_split
    from vgae_toolkit.tasks.link import LinkPredictionTask

    split = None
    if data is None:
        if cfg.dataset.get("loader") is None:
            raise ConfigError(f"dataset={cfg.dataset.name} has no loader: hand the graph over in Python, "
                              f"vgae_toolkit.fit(data, ...), or pick a dataset such as dataset=cora")
        data = build(cfg.dataset.loader, "dataset.loader", root=data_root(cfg))
    else:
        data, split = given_split(data) or (data, None)
    return LinkPredictionTask(
        data,
        split=split,
        features=cfg.dataset.features,
        normalize_features=cfg.dataset.normalize_features,
        val_frac=cfg.split.val_frac,
        test_frac=cfg.split.test_frac,
        split_seed=cfg.split.seed,
        sampler_seed=cfg.seed,
        test_graph=cfg.split.get("test_graph", "train"),
    )


def build_image_task(cfg: DictConfig):
    from vgae_toolkit.tasks.image import build_image_task

    return build_image_task(cfg)


# One builder per dataset kind; a new kind of data registers its task here.
TASK_BUILDERS: dict[str, Callable[[DictConfig], object]] = {"graph": build_link_task, "image": build_image_task}


def check_compatible(cfg: DictConfig) -> None:
    model_kind, data_kind = cfg.model.kind, cfg.dataset.kind
    if model_kind != data_kind:
        raise ConfigError(
            f"model={cfg.model.name} is a {model_kind} model but dataset={cfg.dataset.name} is a {data_kind} "
            f"dataset; pick a {model_kind} dataset or a {data_kind} model"
        )
    if data_kind not in TASK_BUILDERS:
        raise ConfigError(f"dataset.kind={data_kind!r}: expected one of {sorted(TASK_BUILDERS)}")


def build_model(model_cfg: DictConfig, task, encoder: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model of ``model_cfg`` for ``task``; ``encoder`` (a module) replaces the configured encoder."""
    kwargs = {k: v for k, v in model_cfg.items() if k not in MODEL_META_KEYS}
    if encoder is None:
        return build(kwargs, "model", **task.model_kwargs())
    if "encoder" not in kwargs:
        raise ConfigError(f"model={model_cfg.get('name')} takes no encoder module; use a graph auto-encoder model")
    kwargs.pop("encoder")
    return build({**kwargs, "_partial_": True}, "model", **task.model_kwargs())(encoder=encoder)
