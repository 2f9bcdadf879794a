"""``run(cfg)``: one experiment from a composed config to a self-describing run directory."""
from __future__ import annotations

import json
import logging
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
from omegaconf import DictConfig, OmegaConf

import vgae_toolkit
from vgae_toolkit import distributed, interrupt
from vgae_toolkit.builders import TASK_BUILDERS, build, build_model, check_compatible, seed_everything
from vgae_toolkit.checkpoint import save_checkpoint
from vgae_toolkit.errors import ConfigError, TrainingError
from vgae_toolkit.graph_input import save_graph
from vgae_toolkit.loggers import build_logger
from vgae_toolkit.run_folder import extension_state, folder_verdict, interrupted_state
from vgae_toolkit.plots import plot_history
from vgae_toolkit.process import huge_pages_enabled
from vgae_toolkit.schema import validate

log = logging.getLogger(__name__)

# Keys of a trainer config that run() itself uses: where the model and data live.
TRAINER_RUN_KEYS = ("device", "resume", "extend_from")


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


def run(cfg: DictConfig, output_dir: str | Path | None = None, *, data=None, encoder: torch.nn.Module | None = None,
        objects: dict | None = None) -> dict:
    """Train and evaluate one model; returns what it writes to ``metrics.json``.

    Under ``torchrun`` every process trains its share (:mod:`vgae_toolkit.distributed`); rank 0
    alone tests, writes the run directory and returns the metrics, the others return the identity
    and validation numbers and write nothing.

    Args:
        cfg (DictConfig): a composed config (``conf/config.yaml`` and its groups).
        output_dir (str or Path, optional): the run directory; defaults to Hydra's.
        data (optional): a graph handed over in Python (``dataset=given``): a ``Data`` or a
            ready-made split; it is saved as ``graph.pt`` in the run directory.
        encoder (nn.Module, optional): replaces the configured encoder (graph auto-encoders).
        objects (dict, optional): filled with what the run built: ``task``, ``model``, ``trainer``.
    """
    validate(cfg)  # types and ranges first: nothing is built or allocated for a config that cannot work
    ctx = distributed.setup(cfg.trainer.get("device", "cpu"))  # a closed-form fit runs on the CPU
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    out = Path(output_dir)
    if ctx.is_main:
        ensure_writable(out)
    check_compatible(cfg)
    verdict = distributed.broadcast(folder_verdict(out, cfg) if ctx.is_main else None)
    if verdict is not None and verdict[0] == "refuse":  # every process refuses, or none does
        raise ConfigError(verdict[1])
    if verdict is not None:  # every process skips, or none does
        log.info("%s already holds a finished run of this config: skipped", out)
        return verdict[1]
    resume = interrupted_state(out, cfg) if ctx.is_main and cfg.trainer.get("resume", False) else None
    source = cfg.trainer.get("extend_from")
    extended = None  # a finished run continued to more epochs (trainer.extend_from): recorded in metrics.json
    if resume is None and source and ctx.is_main:
        source = (out / source).resolve()  # relative: to this run's folder (an absolute path stays itself)
        resume = extension_state(source, cfg)
        if resume is not None:
            extended = {"extended_from": str(source), "extended_after_epoch": int(resume["epoch"])}
    resume, extended = distributed.broadcast((resume, extended))
    identity = {"model": cfg.model.name, "dataset": cfg.dataset.name, "seed": int(cfg.seed)}
    start = time.perf_counter()
    built: dict = {} if objects is None else objects  # what exists so far: saved if a second signal abandons it
    built.update(data=data, encoder=encoder)
    with interrupt.catch_signals():
        try:
            fit = train(cfg, ctx, out, identity, resume, built)
            if not fit.interrupted:
                metrics = finish(cfg, ctx, out, identity, built["task"], built["model"], fit, start, extended)
                if built.get("logger") is not None:
                    built["logger"].finish(metrics)
        except KeyboardInterrupt:  # asked twice: the step in progress was abandoned
            fit = getattr(built.get("trainer"), "current", None)
            stop_run(cfg, ctx, out, identity, built.get("model"), fit, abandoned=True)
        if fit.interrupted:
            stop_run(cfg, ctx, out, identity, built["model"], fit)
        if interrupt.received():  # asked to stop after the last epoch: the run is complete, stop the sweep
            print(f"stopped by {signal.Signals(interrupt.received()).name} after the run finished; results in {out}",
                  file=sys.stderr)
            raise SystemExit(interrupt.EXIT_CODES[interrupt.received()])
    return metrics


def train(cfg: DictConfig, ctx: distributed.Context, out: Path, identity: dict, resume: dict | None, built: dict):
    """Builds the task, model and trainer (into ``built``) and fits; returns the ``FitResult``."""
    seed_everything(cfg.seed)
    # logger=csv|tensorboard|mlflow: built first, so that a missing extra stops the run before any work
    logger = built["logger"] = build_logger(cfg, out) if ctx.is_main else None
    given = {} if built.get("data") is None else {"data": built["data"]}
    task = built["task"] = TASK_BUILDERS[cfg.dataset.kind](cfg, **given).to(ctx.device)
    if given and ctx.is_main:  # the run folder describes itself: predict and load find the graph here
        save_graph(out / "graph.pt", task.data, task.split)
    absent = task.splits_absent() if hasattr(task, "splits_absent") else []
    if "val" in absent and cfg.trainer.get("select", "last") == "best":
        raise ConfigError("trainer.select=best picks the epoch by its validation numbers, but split.val_frac=0 "
                          "leaves no validation split: use trainer.select=last or split.val_frac > 0")
    model = built["model"] = build_model(cfg.model, task, built.get("encoder")).to(ctx.device)
    # monitor=auto: the task names its main validation metric (link AP, image ELBO)
    auto = {"monitor": task.primary_metric} if cfg.trainer.get("monitor") == "auto" else {}
    trainer_kwargs = {k: v for k, v in cfg.trainer.items() if k not in TRAINER_RUN_KEYS}
    callbacks = [*task.callbacks(model), *([logger] if logger is not None else [])]
    trainer = built["trainer"] = build(trainer_kwargs, "trainer", callbacks=callbacks, **auto)
    evaluate = None if "val" in absent else (lambda m: task.evaluate(m, "val"))  # no validation: no monitoring
    if resume is not None and isinstance(getattr(task, "history", None), list):  # a task's own curves go on
        task.history.extend(resume["history"])
    try:
        batches = task.train_batches(model, rank=ctx.rank, world_size=ctx.world_size)
        fit = trainer.fit(model, batches, evaluate=evaluate, **({"resume": resume} if resume is not None else {}))
    except TrainingError as err:  # keep a record of what happened; a re-run retries this job
        if ctx.is_main:
            write_json(out / "metrics.json", {"status": "failed", **identity, "error": str(err),
                                              "history": err.history})
        raise
    return fit


def finish(cfg: DictConfig, ctx: distributed.Context, out: Path, identity: dict, task, model, fit,
           start: float, extended: dict | None = None) -> dict:
    """Tests the selected model and writes the run directory (rank 0); returns the metrics.

    ``last.pt`` keeps the fit's end state, from which a run with more epochs continues (``trainer.extend_from``).
    """
    if not ctx.is_main:  # rank 0 tests and writes for all
        return {**identity, "rank": ctx.rank, **{k: v for k, v in fit.selected.items() if k.startswith("val_")}}
    absent = task.splits_absent() if hasattr(task, "splits_absent") else []
    test = {} if "test" in absent else task.evaluate(model, "test")  # the only time the test split is touched
    # once, for the selected model: Hits@K and MRR; node clustering and a linear probe where the graph has labels
    final = task.final_metrics(model, node_metrics=bool(cfg.get("node_metrics", True)),
                               seed=int(cfg.seed)) if hasattr(task, "final_metrics") else {}
    metrics = {
        "status": "complete",
        **identity,
        **task.describe(),
        **(model.describe() if hasattr(model, "describe") else {}),
        "selected_epoch": fit.selected_epoch,
        "epochs_run": fit.epochs_done,  # fewer than trainer.epochs when trainer.patience stopped the fit
        **(extended or {}),  # the finished run this one went on from; train_seconds counts its epochs too
        "select": cfg.trainer.get("select", "last"),
        "splits_absent": absent,
        **{f"{split}_{name}": None for split in absent for name in getattr(task, "metric_names", ())},
        **{k: v for k, v in fit.selected.items() if k.startswith("val_")},
        **test,
        **final,
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
    with interrupt.shielded():  # the files are written whole, whatever signal comes
        save_checkpoint(out / "last.pt", fit.last_state or model.state_dict(), cfg, summary,
                        resume=getattr(fit, "resume", None))
        if fit.best_state is not None:
            save_checkpoint(out / "best.pt", fit.best_state, cfg, {**summary, "best_epoch": fit.best_epoch})
        write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    log.info("%s on %s, seed %d: %s (epoch %d), %.1f s", cfg.model.name, cfg.dataset.name, cfg.seed,
             ", ".join(f"{k} {v:.4f}" for k, v in test.items()), fit.selected_epoch, metrics["wall_seconds"])
    return metrics


def stop_run(cfg: DictConfig, ctx: distributed.Context, out: Path, identity: dict, model, fit,
             abandoned: bool = False) -> NoReturn:
    """Saves an interrupted run (rank 0: ``last.pt``, ``metrics.json``), says so in one line and exits.

    The exit status is the shell's for the signal: 130 for SIGINT, 143 for SIGTERM.
    """
    signum = interrupt.received() or signal.SIGINT  # a KeyboardInterrupt raised without a signal counts as one
    name = signal.Signals(signum).name
    resume = None if abandoned or fit is None else fit.resume
    epoch = fit.epochs_done if fit is not None else 0
    if ctx.is_main:
        with interrupt.shielded():
            if model is not None:
                save_checkpoint(out / "last.pt", model.state_dict(), cfg,
                                {"status": "interrupted", **identity, "epoch": epoch}, resume=resume)
            write_json(out / "metrics.json", {
                "status": "interrupted", **identity, "signal": name, "epoch": epoch,
                "epochs": cfg.trainer.get("epochs"), "resumable": resume is not None,
                "config": OmegaConf.to_container(cfg, resolve=True), "history": fit.history if fit else []})
        then = "run it again into the same folder to resume" if resume is not None else "a re-run starts afresh"
        print(f"interrupted by {name} after epoch {epoch}: {'state' if resume else 'weights'} saved in "
              f"{out / 'last.pt'}; {then}", file=sys.stderr)
    raise SystemExit(interrupt.EXIT_CODES[signum])
