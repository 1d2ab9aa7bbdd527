"""Run provenance: versions, machine, device and the git commit recorded beside every stored result."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from ..core.device import describe


#: the code that produces stored results, relative to the repository root: the package, the benchmarks, the scripts
CODE_PATHS = ("clipbook", "benchmarks", "scripts")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit, with ``-dirty`` if the code that produces results (:data:`CODE_PATHS`) has
    uncommitted changes or untracked files (a new module counts), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parents[2]  # the repository root (an editable install's checkout)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                               cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_STARTED_AT_COMMIT: str | None = None


def cpu_description() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``) and the vector instructions PyTorch's kernels use on it,
    e.g. ``"AMD EPYC, AVX2"``. CPU training is deterministic on one machine, but a rerun on another machine
    differed from the stored run (chapter 6); kernels chosen by instruction set are the likely cause, so this is
    recorded beside every result."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}"


def provenance(device: torch.device | None = None) -> dict:
    """Versions and machine facts recorded beside every stored result.

    ``git_commit`` is the commit when this process first asked (the runner asks when a run starts), so a
    long-running process keeps reporting the code it loaded, not a later HEAD.
    """
    global _STARTED_AT_COMMIT
    if _STARTED_AT_COMMIT is None:
        _STARTED_AT_COMMIT = git_commit()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
        "cpu": cpu_description(),
        "git_commit": _STARTED_AT_COMMIT,
        "device": describe(device or torch.device("cpu")),
    }
