"""Atomic file writes (nothing half-written is ever left on disk) and the per-user cache folder."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


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


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/clipbook`` or ``~/.cache/clipbook``: the per-user default for data and cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clipbook"
