"""Atomic file writes and run provenance (nothing half-written is ever left on disk)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .device import describe


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write via ``write(tmp)`` into a temp file beside ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600: give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    return _atomic(Path(path), write)


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return _atomic(Path(path), lambda tmp: torch.save(obj, tmp))


def merge_json_atomic(path: str | os.PathLike, update: dict) -> Path:
    """Merge ``update`` into the JSON object stored at ``path`` (one level deep: dict values are merged),
    creating the file when it is missing or unreadable; written atomically."""
    try:
        old = read_json(path)
    except (OSError, ValueError):
        old = {}
    for k, v in update.items():
        old[k] = {**old[k], **v} if isinstance(v, dict) and isinstance(old.get(k), dict) else v
    return write_json_atomic(path, old)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit (with ``-dirty`` if the package's own source has uncommitted changes), or
    ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_STARTED_AT_COMMIT: str | None = None


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
        "git_commit": _STARTED_AT_COMMIT,
        "device": describe(device or torch.device("cpu")),
    }
