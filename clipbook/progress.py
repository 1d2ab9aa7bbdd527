"""Progress bars (tqdm), silenced when ``CLIPBOOK_NO_PROGRESS=1`` (tests, notebooks under nbval)."""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_disabled() -> bool:
    return os.environ.get("CLIPBOOK_NO_PROGRESS", "") not in ("", "0")


def progress(iterable=None, **kwargs):
    """``tqdm`` with ``disable`` taken from the environment unless given."""
    kwargs.setdefault("disable", progress_disabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
