"""``results/benchmarks.json``: one schema for the stored timing benchmarks, one writer and the readers the book uses.

Layout (``schema`` 2): one section per benchmark, one entry per device type, each with its own provenance::

    {"schema": 2,
     "step_cost":           {"cpu": {"provenance": {...}, "models": {"mnist_mlp": {...}, "fashion_cnn": {...}}}},
     "pgd_throughput":      {"cpu": {"provenance": {...}, "models": {...}}},
     "pgd_vs_torchattacks": {"cpu": {"provenance": {...}, "models": {...}, "torchattacks": "3.5.1"}}}

``step_cost`` (``benchmarks/bench_clip_cost.py``): per model ``step_ms_rounds`` (ms per training step of every
method and breakdown stage, per round of the round-robin), ``step_ms`` (their medians), ``ratios`` (method /
standard: the median of the per-round ratios), ``breakdown_ratios`` (the fused CLIP step built up from a standard
one, the same way). ``pgd_throughput`` (``benchmarks/bench_pgd.py``): eq. (13) PGD-100 (sign steps), images per
second. ``pgd_vs_torchattacks`` (``benchmarks/bench_pgd_vs_torchattacks.py``): the package's L2 PGD beside
torchattacks' PGDL2 in one run.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from ..core.files import read_json, write_json_atomic
from .provenance import provenance

SCHEMA = 2
SECTIONS = ("step_cost", "pgd_throughput", "pgd_vs_torchattacks")
#: the stored benchmarks of this checkout
BENCHMARKS = Path(__file__).resolve().parents[2] / "results" / "benchmarks.json"


def store_section(path: str | Path, section: str, device: torch.device, models: dict[str, Any],
                  **extra: Any) -> Path:
    """Write one benchmark's figures for one device type into ``path`` (atomically), with the provenance of
    this run, keeping every other section and device. A file in an older layout is replaced."""
    if section not in SECTIONS:
        raise ValueError(f"unknown benchmark section {section!r}: one of {SECTIONS}")
    path = Path(path)
    data = read_json(path) if path.exists() else {}
    if data.get("schema") != SCHEMA:
        data = {"schema": SCHEMA}
    data.setdefault(section, {})[device.type] = {"provenance": provenance(device), "models": models, **extra}
    return write_json_atomic(path, data)


def load_benchmarks(path: str | Path = BENCHMARKS) -> dict[str, Any]:
    """The stored benchmarks; a missing file or another layout is a one-line error naming the fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no benchmarks at {path}: run `make bench`")
    data = read_json(path)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not in benchmark schema {SCHEMA}: run `make bench` to measure again")
    return data


def section(bench: dict[str, Any], name: str, device: str = "cpu") -> dict[str, Any]:
    """One benchmark's entry for one device type: ``{"provenance": ..., "models": {...}, ...}``."""
    try:
        return bench[name][device]
    except KeyError:
        raise KeyError(f"no {name} benchmark for device {device!r} stored: run `make bench` on such a machine") from None


def step_cost(bench: dict[str, Any], model: str, device: str = "cpu") -> dict[str, Any]:
    """The step-time benchmark of one model (``"mnist_mlp"``, ``"fashion_cnn"``) on one device type."""
    return section(bench, "step_cost", device)["models"][model]


def step_ratio(bench: dict[str, Any], model: str, method: str, device: str = "cpu", over: str = "standard") -> float:
    """Time of one training step of ``method`` over one of ``over``: the median over the benchmark's rounds of the
    ratio within each round (both timed in the same run, taking turns), as the stored ``ratios`` are."""
    rounds = step_cost(bench, model, device)["step_ms_rounds"]
    return statistics.median(a / b for a, b in zip(rounds[method], rounds[over]))


def ratio_cells(cost: dict[str, Any]) -> dict[str, str]:
    """A :func:`step_cost` entry's ratios for a table: per method ``"4.50× (3.54–5.83)"``, the median ratio to a
    standard step and its range over the benchmark's rounds."""
    return {m: f"{r:.2f}× ({cost['ratio_range_over_rounds'][m][0]:.2f}–{cost['ratio_range_over_rounds'][m][1]:.2f})"
            for m, r in cost["ratios"].items()}
