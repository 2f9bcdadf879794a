"""Checks before Hydra creates a run folder: the config's values and the output directory.

Hydra creates the run (or sweep) folder, writes ``.hydra/`` and opens the log before the task
function starts; a config that cannot work then leaves an empty folder behind, and an output
directory that cannot be created ends in Hydra's own traceback. :class:`PreflightCallback` runs in
``on_run_start`` / ``on_multirun_start``, before any folder exists (``conf/config.yaml`` registers
it under ``hydra.callbacks``), and reports a failure as one line, as the command line does.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vgae_toolkit.errors import ConfigError, ToolkitError
from vgae_toolkit.schema import validate


def fail(err: ToolkitError) -> NoReturn:
    """Print a named, expected failure as one line on stderr (no traceback) and exit with status 2."""
    print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(2)


def check_output_root(directory: str | Path, key: str) -> None:
    """Fail unless ``directory`` exists as a writable folder or can be created.

    The first existing ancestor must be a folder (not a file) in which a folder can be made; a
    probe folder is created and removed there, which also catches read-only filesystems and
    permissions that ``os.access`` does not see.

    Args:
        directory (str or Path): the run or sweep folder Hydra is about to create.
        key (str): the config key it comes from, named in the error.
    """
    path = Path(os.path.expanduser(str(directory))).absolute()
    ancestor = path
    while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    hint = "set VGAE_TOOLKIT_OUTPUT or paths.output_dir to a writable directory"
    if not ancestor.is_dir():
        what = "is a file" if ancestor.is_file() else "is not a directory"
        raise ConfigError(f"{key}={path}: cannot create the output directory, {ancestor} {what}; {hint}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vgae-toolkit-probe-", dir=ancestor))
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot create the output directory in {ancestor} "
                          f"({err.strerror}); {hint}") from None


def check_config(config: DictConfig, dir_key: str | None) -> None:
    """Validate ``config`` (:func:`vgae_toolkit.schema.validate`, model and dataset kinds) and,
    when ``dir_key`` is given, the folder it names."""
    from vgae_toolkit.builders import check_compatible  # imports torch: only once Hydra calls us

    validate(config)
    check_compatible(config)
    if dir_key is None:
        return
    try:
        directory = OmegaConf.select(config, dir_key, throw_on_missing=True)
    except Exception:  # noqa: BLE001 - a folder name Hydra cannot resolve either: its own error says why
        return
    if directory is not None:
        check_output_root(str(directory), dir_key)


def remove_if_untouched(folder: str | Path, job_name: str) -> None:
    """Remove a job folder that holds nothing but what Hydra wrote on creating it."""
    folder = Path(folder)
    hydra_files = {".hydra", f"{job_name}.log"}
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= hydra_files:
        shutil.rmtree(folder, ignore_errors=True)


class PreflightCallback(Callback):
    """Refuses a bad config or output directory before Hydra creates any folder.

    A single run is checked in ``on_run_start``, a sweep's shared config in ``on_multirun_start``;
    a sweep's jobs differ by their overrides, so each is checked again in ``on_job_start`` (its
    folder exists by then: it is removed again if Hydra's files are all it holds).
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return  # a single run was checked in on_run_start
        try:
            check_config(config, None)
        except ToolkitError as err:
            remove_if_untouched(config.hydra.runtime.output_dir, config.hydra.job.name)
            fail(err)

    @staticmethod
    def _check(config: DictConfig, dir_key: str) -> None:
        try:
            check_config(config, dir_key)
        except ToolkitError as err:
            fail(err)  # SystemExit: Hydra turns exceptions raised in callbacks into warnings
