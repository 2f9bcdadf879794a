"""``run(cfg)``: one experiment from a composed config to a self-describing run directory."""
from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import vgae_toolkit
from vgae_toolkit import distributed
from vgae_toolkit.checkpoint import save_checkpoint
from vgae_toolkit.errors import ConfigError, ToolkitError, TrainingError
from vgae_toolkit.plots import plot_history
from vgae_toolkit.process import huge_pages_enabled

log = logging.getLogger(__name__)

# Keys of a model config that describe it rather than being constructor arguments.
MODEL_META_KEYS = ("name", "kind")
# Keys of a trainer config that run() itself uses: where the model and data live.
TRAINER_RUN_KEYS = ("device",)


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
        raise ConfigError(f"{key}: {err}") from err


def build_link_task(cfg: DictConfig):
    from vgae_toolkit.tasks.link import LinkPredictionTask

    data = build(cfg.dataset.loader, "dataset.loader", root=data_root(cfg))
    return LinkPredictionTask(
        data,
        features=cfg.dataset.features,
        normalize_features=cfg.dataset.normalize_features,
        val_frac=cfg.split.val_frac,
        test_frac=cfg.split.test_frac,
        split_seed=cfg.split.seed,
        sampler_seed=cfg.seed,
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


def build_model(model_cfg: DictConfig, task) -> torch.nn.Module:
    kwargs = {k: v for k, v in model_cfg.items() if k not in MODEL_META_KEYS}
    return build(kwargs, "model", **task.model_kwargs())


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically: readers see the old file or the whole new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, path)


def ensure_writable(out: Path) -> None:
    """Fail before any work when the run directory cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"output directory {out} is not writable ({err.strerror}); set paths.output_dir or VGAE_TOOLKIT_OUTPUT"
        ) from err


def finished_run(out: Path, cfg: DictConfig) -> dict | None:
    """The metrics of a complete run of the same config in ``out``, else ``None``."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = metrics.get("config") == OmegaConf.to_container(cfg, resolve=True)
    return metrics if metrics.get("status") == "complete" and same else None


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> dict:
    """Train and evaluate one model; returns what it writes to ``metrics.json``.

    Under ``torchrun`` every process trains its share (:mod:`vgae_toolkit.distributed`); rank 0
    alone tests, writes the run directory and returns the metrics, the others return the identity
    and validation numbers and write nothing.

    Args:
        cfg (DictConfig): a composed config (``conf/config.yaml`` and its groups).
        output_dir (str or Path, optional): the run directory; defaults to Hydra's.
    """
    ctx = distributed.setup(cfg.trainer.get("device", "cpu"))  # a closed-form fit runs on the CPU
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    out = Path(output_dir)
    if ctx.is_main:
        ensure_writable(out)
    check_compatible(cfg)
    finished = distributed.broadcast(finished_run(out, cfg) if ctx.is_main and cfg.get("skip_finished") else None)
    if finished is not None:  # every process skips, or none does
        log.info("%s already holds a finished run of this config: skipped", out)
        return finished
    start = time.perf_counter()
    seed_everything(cfg.seed)
    task = TASK_BUILDERS[cfg.dataset.kind](cfg).to(ctx.device)
    model = build_model(cfg.model, task).to(ctx.device)
    # monitor=auto: the task names its main validation metric (link AP, image ELBO)
    auto = {"monitor": task.primary_metric} if cfg.trainer.get("monitor") == "auto" else {}
    trainer_kwargs = {k: v for k, v in cfg.trainer.items() if k not in TRAINER_RUN_KEYS}
    trainer = build(trainer_kwargs, "trainer", callbacks=task.callbacks(model), **auto)
    identity = {"model": cfg.model.name, "dataset": cfg.dataset.name, "seed": int(cfg.seed)}
    try:
        batches = task.train_batches(model, rank=ctx.rank, world_size=ctx.world_size)
        fit = trainer.fit(model, batches, evaluate=lambda m: task.evaluate(m, "val"))
    except TrainingError as err:  # keep a record of what happened; a re-run retries this job
        if ctx.is_main:
            write_json(out / "metrics.json", {"status": "failed", **identity, "error": str(err),
                                              "history": err.history})
        raise
    if not ctx.is_main:  # rank 0 tests and writes for all
        return {**identity, "rank": ctx.rank, **{k: v for k, v in fit.selected.items() if k.startswith("val_")}}
    test = task.evaluate(model, "test")  # the only time the test split is touched
    metrics = {
        "status": "complete",
        **identity,
        **task.describe(),
        **(model.describe() if hasattr(model, "describe") else {}),
        "selected_epoch": fit.selected_epoch,
        "select": cfg.trainer.get("select", "last"),
        **{k: v for k, v in fit.selected.items() if k.startswith("val_")},
        **test,
        "train_seconds": fit.train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "device": str(ctx.device),
        "processes": ctx.world_size,
        "torch_threads": torch.get_num_threads(),
        "huge_pages": huge_pages_enabled(),
        "versions": {"vgae_toolkit": vgae_toolkit.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "history": fit.history,
    }
    plot_history(fit.history, out / "curves.png", title=f"{cfg.model.name} on {cfg.dataset.name} (seed {cfg.seed})")
    task.artefacts(model, out)
    summary = {k: v for k, v in metrics.items() if k not in ("history", "config")}
    save_checkpoint(out / "last.pt", fit.last_state or model.state_dict(), cfg, summary)
    if fit.best_state is not None:
        save_checkpoint(out / "best.pt", fit.best_state, cfg, {**summary, "best_epoch": fit.best_epoch})
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    log.info("%s on %s, seed %d: %s (epoch %d), %.1f s", cfg.model.name, cfg.dataset.name, cfg.seed,
             ", ".join(f"{k} {v:.4f}" for k, v in test.items()), fit.selected_epoch, metrics["wall_seconds"])
    return metrics
