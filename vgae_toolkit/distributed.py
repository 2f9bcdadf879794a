"""Devices and data-parallel training over several processes (launched by ``torchrun``).

``torchrun --nproc_per_node=W -m vgae_toolkit ...`` starts W copies of the command line with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Every process builds the same data and model from
the same seed, and :func:`setup` joins them in one process group (gloo on the CPU, NCCL on GPUs,
where process i of a machine takes ``cuda:i``). Each process computes its share of the loss
(:func:`share`: a graph run's pairs and Gram rows, an image run's share of every mini-batch),
scaled so that the mean over processes is the loss of the whole batch; :func:`average_gradients`
then averages gradients and loss terms in one all-reduce, so every process takes the same step,
the step one process takes on the whole batch. Validation numbers come from rank 0
(:func:`broadcast`), so every process selects the same epoch; only rank 0 writes.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as ``torchrun`` sets them; ``(0, 1, 0)`` for a plain process."""
    try:
        return tuple(int(os.environ.get(key, default)) for key, default in
                     (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    except ValueError as err:
        raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({err})") from err


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The device that ``trainer.device`` names.

    Args:
        spec (str): ``auto`` (CUDA when ``torch.cuda.is_available()``, else the CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        local_rank (int, optional): this process's index on its machine when several processes
            train together; ``auto`` and ``cuda`` then mean ``cuda:<local_rank>``. (default: ``None``)
    """
    name = str(spec).strip().lower()
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", "cuda" if name == "auto" else name)
    if match is None:
        raise ConfigError(f"trainer.device: expected {DEVICE_CHOICES}, got {spec!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={spec}: CUDA is not available to this torch {torch.__version__}; "
                          "use trainer.device=cpu or auto")
    if match.group(1) is not None and local_rank is not None:
        raise ConfigError(f"trainer.device={spec} would put every process on one GPU; with several processes "
                          "use auto or cuda (process i of a machine takes cuda:i)")
    index = int(match.group(1)) if match.group(1) is not None else local_rank
    if index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device: GPU {index} asked for, but {torch.cuda.device_count()} visible")
    return torch.device("cuda", index)


def setup(device: str = "auto") -> Context:
    """Resolve ``trainer.device`` and, when launched as several processes, join the process group.

    The group is created once per process (gloo for the CPU, NCCL for GPUs) and reused by later
    runs of a sweep; the launcher's environment (``MASTER_ADDR``, ``MASTER_PORT``) says where to meet.
    """
    rank, world_size, local_rank = launch_env()
    resolved = resolve_device(device, local_rank if world_size > 1 else None)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)  # the current device: NCCL and the random streams use it
    if world_size > 1:
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        elif dist.get_backend() != backend:
            raise ConfigError(f"trainer.device={device}: the processes already train together over "
                              f"{dist.get_backend()}, which cannot serve {resolved.type} tensors")
    return Context(rank, world_size, local_rank, resolved)


def get_world_size() -> int:
    """Processes training together (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(count: int, rank: int, world_size: int) -> slice:
    """The contiguous part of ``range(count)`` that process ``rank`` takes (sizes differ by at most one)."""
    return slice(count * rank // world_size, count * (rank + 1) // world_size)


def average_gradients(model: nn.Module, terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """After ``backward()``: average the gradients of ``model`` and the loss ``terms`` over processes.

    One all-reduce carries both (as DistributedDataParallel's averaging, without wrapping the
    model). With one process, gradients are left alone and ``terms`` is returned as is.

    Returns:
        dict: the loss terms averaged over processes (detached), the keys of ``terms``.
    """
    world = get_world_size()
    if world == 1:
        return terms
    # every process runs the same code, so the same parameters have gradients everywhere
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    values = torch.stack([t.detach().reshape(()) for t in terms.values()])  # [num_terms]
    flat = torch.cat([*(g.reshape(-1) for g in grads), values.to(grads[0].dtype if grads else values.dtype)])
    dist.all_reduce(flat)  # sum over processes
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return {key: flat[offset + i] for i, key in enumerate(terms)}


@torch.no_grad()
def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Every process starts from the parameters of process ``src`` (as DistributedDataParallel does)."""
    if get_world_size() > 1:
        for p in model.parameters():
            dist.broadcast(p.data, src=src)


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` as process ``src`` holds it, on every process (picklable objects; as is with one process)."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def worker_overrides(scratch: str) -> list[str]:
    """Hydra overrides for a process other than rank 0: a throwaway output folder, no ``.hydra``, quiet logs.

    Each process would otherwise resolve ``${now:...}`` on its own and create its own run folder.
    """
    return [f"hydra.run.dir='{scratch}'", f"hydra.sweep.dir='{scratch}'", "hydra.output_subdir=null",
            "++hydra.job_logging.root.level=WARNING", "++hydra.hydra_logging.root.level=WARNING"]


@contextmanager
def command_line(argv: list[str] | None = None) -> Iterator[None]:
    """Around the command line: only rank 0 lets Hydra create the run folder; the group is closed at exit.

    A process other than rank 0 gets :func:`worker_overrides` appended to ``argv`` (``sys.argv``
    by default) and a temporary output folder, removed at the end.
    """
    argv = sys.argv if argv is None else argv
    rank_here, world, _ = launch_env()
    scratch = tempfile.mkdtemp(prefix=f"vgae_toolkit_rank{rank_here}_") if world > 1 and rank_here else None
    if scratch is not None:
        argv += worker_overrides(scratch)
    try:
        yield
    finally:
        shutdown()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
