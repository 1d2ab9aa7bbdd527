"""What the book reproduces so far, read from the stored results: which of the paper's Table 1 rows are stored,
with how many seeds, on what budget, and which of Fig. 2's statements hold. Chapter 1 prints it when the book is
built, so the sentence stays true as runs finish (nothing in it is typed by hand)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..repro.experiments import PAPER_TABLE1
from ..core.files import read_json
from ..repro.storage import load_results

DATASET_NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}


def _short(row: str) -> str:
    return row.split("-", 1)[1]


def table1_status(results: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    """The paper's Table 1 rows of ``dataset`` among ``results``: rows stored (at least one seed), seeds per row,
    epochs, devices, hours of training plus evaluation, and the runs of other rows (baselines beyond the paper)."""
    paper = [_short(k) for k in PAPER_TABLE1 if k.startswith(dataset + "-")]
    mine = [r for r in results if r["dataset"] == dataset]
    ours = [r for r in mine if _short(r["row"]) in paper]
    seeds = {k: sorted(r["seed"] for r in ours if _short(r["row"]) == k) for k in paper}
    stored = [k for k in paper if seeds[k]]
    prov = [r.get("provenance", {}) for r in ours]
    return {"dataset": dataset, "paper_rows": len(paper), "rows_stored": len(stored),
            "runs": len(ours), "seeds": seeds,
            "seeds_min": min((len(seeds[k]) for k in stored), default=0),
            "seeds_max": max((len(seeds[k]) for k in stored), default=0),
            "seed_ids": sorted({s for k in stored for s in seeds[k]}),
            "epochs": sorted({r["config"]["epochs"] for r in ours}),
            "devices": sorted({p.get("device", "?") for p in prov}),
            "hours": sum(sum(p.get(k) or 0 for k in ("train_wall_s", "eval_wall_s", "evaluation_wall_s")) for p in prov) / 3600,
            "other_runs": len(mine) - len(ours),
            "other_rows": sorted({_short(r["row"]) for r in mine if _short(r["row"]) not in paper})}


def fig2_status(results_dir: str | Path) -> dict[str, Any] | None:
    """The verdicts on the paper's Fig. 2 statements over the stored seeds (``regression/fig2_seeds.json``'s
    ``summary``, :mod:`clipbook.repro.fig2_seeds`), or None when there is none."""
    p = Path(results_dir) / "regression" / "fig2_seeds.json"
    if not p.exists():
        return None
    summary = read_json(p)["summary"]
    st = summary["statements"]
    return {"statements": {k: v["verdict"] for k, v in st.items()}, "n": len(st),
            "hold": sum(v["verdict"] == "holds" for v in st.values()),
            "failing": [v["text"] for v in st.values() if v["verdict"] == "fails"],
            "undecided": [v["text"] for v in st.values() if v["verdict"] == "undecided"],
            "seeds": summary["n_not_stuck"], "seeds_all": summary["n"],
            "reproduced": all(v["verdict"] == "holds" for v in st.values())}


def book_status(results_dir: str | Path) -> dict[str, Any]:
    """Everything :func:`status_markdown` says, as numbers."""
    results_dir = Path(results_dir)
    results = load_results(results_dir)
    budget = results_dir / "fashion_epoch_budget.json"
    return {"table1": {ds: table1_status(results, ds) for ds in DATASET_NAMES},
            "fashion_epochs": read_json(budget).get("chosen_epochs") if budget.exists() else None,
            "fig2": fig2_status(results_dir)}


def _seeds(t: dict[str, Any]) -> str:
    n = (f"{t['seeds_min']}" if t["seeds_min"] == t["seeds_max"] else f"{t['seeds_min']} to {t['seeds_max']}")
    return f"{n} seed{'s' if t['seeds_max'] > 1 else ''} each (seeds {', '.join(map(str, t['seed_ids']))})"


def _device(d: str) -> str:
    """``cpu (1 threads)`` -> ``one CPU thread``; anything else as stored."""
    m = re.fullmatch(r"cpu \((\d+) threads?\)", d)
    if not m:
        return d
    n = int(m.group(1))
    return "one CPU thread" if n == 1 else f"{n} CPU threads"


def _epochs(t: dict[str, Any]) -> str:
    e = t["epochs"]
    return f"{e[0]} epochs per run" if len(e) == 1 else f"{e[0]} to {e[-1]} epochs per run"


def status_markdown(s: dict[str, Any]) -> str:
    """The status as a Markdown list (one item per experiment of the paper), for chapter 1."""
    lines = []
    for ds, t in s["table1"].items():
        name = DATASET_NAMES[ds]
        if t["rows_stored"]:
            line = (f"**{name}, Table 1** (chapter 6): {t['rows_stored']} of the paper's {t['paper_rows']} rows stored, "
                    f"{_seeds(t)}, {_epochs(t)}, each on {' / '.join(map(_device, t['devices']))}: {t['runs']} runs, "
                    f"{t['hours']:.1f} hours of training and evaluation in all.")
            if t["rows_stored"] < t["paper_rows"]:
                missing = [k for k, v in t["seeds"].items() if not v]
                line += f" Not yet stored: {', '.join(missing)}."
        else:
            line = f"**{name}, Table 1**: no run stored yet"
            if ds == "fashion" and s.get("fashion_epochs"):
                line += (f"; its runs are under way with E = {s['fashion_epochs']} epochs (the budget measured in "
                         "`results/fashion_epoch_budget.json`) and will appear in chapter 6 when they are stored")
            line += "."
        if t["other_runs"]:
            line += (f" Beyond the paper: {t['other_runs']} runs of {len(t['other_rows'])} further rows "
                     f"({', '.join(t['other_rows'])}; chapter 7).")
        lines.append(line)
    f2 = s.get("fig2")
    if f2 is None:
        lines.append("**Fig. 2** (regression, chapter 5): no stored run yet.")
    else:
        seeds = (f" over the {f2['seeds']} of {f2['seeds_all']} seeds whose λ = 0 network is not stuck at a constant"
                 if f2.get("seeds") else "")
        line = (f"**Fig. 2** (regression, chapter 5): {f2['hold']} of the {f2['n']} statements the paper makes about it "
                f"hold{seeds}")
        if f2["reproduced"]:
            line += ": it is reproduced."
        else:
            line += "; not reproduced"
            if f2["failing"]:
                line += f", fails: {'; '.join(f2['failing'])}"
            if f2.get("undecided"):
                line += f"; undecided: {'; '.join(f2['undecided'])}"
            line += ". Chapter 5 shows each seed and the setting searched."
        lines.append(line)
    return "\n".join(f"* {x}" for x in lines)
