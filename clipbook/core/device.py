"""Where computations run: one ``device`` setting (``auto``: CUDA, then Apple MPS, then the CPU).

Random draws come from CPU generators and are moved to the device (shuffling, pairs, noise, L2 PGD's random
starts), so a seed gives the same draws everywhere; the exception is APGD (:mod:`clipbook.core.apgd`), whose
generators live on the inputs' device, so its random starts on a GPU differ from those on the CPU for the same
seed. Results are bit-identical run to run on the CPU. On a GPU, cuDNN/cuBLAS kernels may pick
non-deterministic algorithms, so the last digits of losses, and through them lambda's path, can differ
between runs.
"""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``torch.device`` for ``name`` (one of :data:`DEVICES` or e.g. ``"cuda:1"``); ``ValueError`` with the
    fix when the device is not available here."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    base = name.split(":")[0]
    if base not in DEVICES[1:]:
        raise ValueError(f"unknown device {name!r}; choose one of {DEVICES} (e.g. cuda:1)")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available here; use --device cpu or auto")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but Apple MPS is not available here; use --device cpu or auto")
    if base == "cuda":
        torch.backends.cudnn.benchmark = True
    return torch.device(name)


def describe(device: torch.device) -> str:
    """A human-readable name of the device, e.g. ``cuda (NVIDIA H200)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
