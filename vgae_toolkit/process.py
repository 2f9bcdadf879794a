"""Process-wide settings that must be made before ``torch`` is imported.

Large graphs allocate tensors of tens to hundreds of MB every epoch (a million-node VGAE: Z, the
hidden layer, the gathered rows of the edges). Such allocations come straight from the kernel, and
touching them page-faults once per 4 KiB page. PyTorch can ask for 2 MiB transparent huge pages
instead (``THP_MEM_ALLOC_ENABLE=1``: tensors of 2 MiB and more, aligned and ``madvise``'d), which
cuts those faults by 512x, with the same peak memory and the same numbers; graphs of a few thousand
nodes do not notice (the benchmark report has the measured epochs).

PyTorch reads the variable once, when it is first imported, so only the command-line entry points
(``python -m vgae_toolkit``, ``python benchmarks/bench.py``) set it, and only where the user has
not: ``THP_MEM_ALLOC_ENABLE=0`` turns it off. Code that imports the toolkit as a library sets it
itself before importing torch.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_available(setting: Path = THP_SETTING) -> bool:
    """Whether the kernel grants huge pages to a process that asks (mode ``always`` or ``madvise``)."""
    try:
        mode = setting.read_text()
    except OSError:  # not Linux, or no THP support
        return False
    return "[never]" not in mode


def enable_huge_pages(setting: Path = THP_SETTING) -> bool:
    """Sets ``THP_MEM_ALLOC_ENABLE=1`` unless the user chose a value, torch is already imported or the
    kernel would refuse (PyTorch would then warn at the first large allocation). Returns whether torch
    will use huge pages."""
    if "torch" not in sys.modules and huge_pages_available(setting):
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return huge_pages_enabled()


def huge_pages_enabled() -> bool:
    """Whether this process's torch allocates its large tensors on huge pages (as far as the variable
    says: it is read when torch is first imported)."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"  # PyTorch's own reading: "1" on, "0" off
