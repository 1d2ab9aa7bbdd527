"""Where things live on disk: results (JSON + figure tensors + checkpoints) and the resumable cache.

- Results folder: a reader's runs go to ``$CLIPBOOK_RESULTS`` or ``./clipbook-results``; the book reads
  only its own ``results/`` folder (``make reproduce`` writes there explicitly). Every run is
  ``<results>/<name>.json``, ``<results>/<name>.artifacts.pt`` and ``<results>/checkpoints/<name>.pt``.
- Cache: resumable training state, ``$CLIPBOOK_CACHE`` or ``~/.cache/clipbook`` (never committed).
Everything is written atomically (:mod:`clipbook.core.files`).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.files import read_json, user_cache
from .schema import RunResult, check_result

RESULTS_ENV = "CLIPBOOK_RESULTS"
CACHE_ENV = "CLIPBOOK_CACHE"


def default_results_dir() -> Path:
    """A reader's results folder: ``$CLIPBOOK_RESULTS`` or ``./clipbook-results``."""
    return Path(os.environ.get(RESULTS_ENV) or "clipbook-results").expanduser()


def cache_dir() -> Path:
    """``$CLIPBOOK_CACHE`` or :func:`user_cache`: resumable training state, never committed."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else user_cache()


def result_path(results_dir: str | os.PathLike, name: str) -> Path:
    return Path(results_dir) / f"{name}.json"


def artifacts_path(results_dir: str | os.PathLike, name: str) -> Path:
    return Path(results_dir) / f"{name}.artifacts.pt"


def checkpoint_path(results_dir: str | os.PathLike, name: str) -> Path:
    return Path(results_dir) / "checkpoints" / f"{name}.pt"


def final_checkpoint_path(results_dir: str | os.PathLike, name: str) -> Path:
    """The weights after the last epoch (the selected ones are at :func:`checkpoint_path`)."""
    return Path(results_dir) / "checkpoints" / f"{name}.final.pt"


def state_path(results_dir: str | os.PathLike, name: str) -> Path:
    """The resumable training state of run ``name`` for ``results_dir`` (one cache folder per results folder,
    so a reader's run never resumes from, or overwrites, the book's)."""
    key = hashlib.sha1(str(Path(results_dir).resolve()).encode()).hexdigest()[:10]
    return cache_dir() / "runs" / key / f"{name}.state.pt"


def claim(results_dir: str | os.PathLike, name: str) -> Path | None:
    """Claim run ``name`` for this process, so that several ``reproduce --share`` workers split one queue:
    a lock file ``<results>/.claims/<name>`` made atomically with this process id. Returns it, or None when a
    live process holds it (a claim of a process that is gone is taken over). Remove it when the run ends.
    Meant for workers on one machine (process ids mean nothing across machines); two workers that take over
    the same stale claim at the same instant could both run it, which wastes time but writes the same result."""
    folder = Path(results_dir) / ".claims"
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)
                return None  # held by a live process
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                return None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    return None


def load_results(results_dir: str | os.PathLike) -> list[RunResult]:
    """All stored run results in ``results_dir`` (sorted by name), each checked against the schema; other
    JSON files there (benchmarks, figures) are skipped."""
    out = []
    for p in sorted(Path(results_dir).glob("*.json")):
        d = read_json(p)
        if not p.name.startswith(".") and isinstance(d, dict) and "row" in d:
            out.append(check_result(d, str(p)))
    return out
