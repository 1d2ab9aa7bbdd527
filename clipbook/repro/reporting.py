"""Table 1 from stored results, the differences to the paper, and the paper's qualitative claims decided
on the measurements (holds / fails / undecided)."""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from typing import Any, Sequence

from . import protocol
from .experiments import PAPER_TABLE1, EvalBudget
from .schema import RunResult, reading, reg_parameter

#: Table 1's columns in our results (the last is the regularisation parameter, see schema.reg_parameter).
COLUMNS = ("train", "test", "noise", "noise_normalised", "pgd", "worst", "param")
PAPER_COLUMNS = {"train": 0, "test": 1, "noise": 2, "noise_normalised": 2, "pgd": 3, "param": 4}


def worst_at(r: RunResult, eps: float) -> float | None:
    """The attacks' per-image worst-case accuracy [%] of a stored run at radius ``eps`` (``None`` where the run
    has no strong-attack evaluation at that radius)."""
    rob = r.get("robust") or {}
    return rob["worst"][rob["eps"].index(eps)] if eps in rob.get("eps", []) else None


def _value(r: RunResult, column: str) -> float | None:
    if column == "param":
        return reg_parameter(r)
    if column == "worst":
        return worst_at(r, protocol.EPS)
    return r["metrics"][column]


def group_key(r: RunResult) -> tuple[str, str]:
    """Runs are averaged only when everything but the seed is the same: the row and the full configuration
    (epochs, every setting) and the evaluation budget."""
    cfg = {k: v for k, v in r["config"].items() if k != "seed"}
    budget = asdict(EvalBudget(**r.get("budget", {})))  # fields added later take their defaults
    return r["row"], json.dumps([cfg, budget], sort_keys=True)


def table1(results: Sequence[RunResult], which: str = "selected") -> list[dict[str, Any]]:
    """Rows of Table 1 for one reading of the runs (``which``: the ``"selected"`` checkpoints or the
    ``"final"`` networks, see :func:`clipbook.repro.schema.reading`): per row and configuration the mean and std
    over seeds of each column (lambda / mu at the epoch of the network measured), the seeds, the epoch of
    each seed's network, and the paper's values. Order: the paper's, then other rows. Unlike runs are never
    averaged: a row key that occurs with two configurations gives two rows (the second marked ``variant``)."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in filter(None, (reading(r, which) for r in results)):
        groups.setdefault(group_key(r), []).append(r)
    order = {k: i for i, k in enumerate(PAPER_TABLE1)}
    rows, seen = [], set()
    for (key, cfg), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0][0],
                                                                  -len(kv[1]), kv[0][1])):
        rs = sorted(rs, key=lambda r: r["seed"])
        row: dict[str, Any] = {"row": key, "variant": key in seen, "seeds": [r["seed"] for r in rs],
                               "epochs": rs[0]["config"]["epochs"], "n_pgd_test": rs[0]["budget"]["pgd"] or 10000,
                               "network_epochs": [r["metrics"]["best_epoch"] for r in rs], "reading": which}
        seen.add(key)
        for c in COLUMNS:
            vals = [v for v in (_value(r, c) for r in rs) if v is not None]
            row[c] = statistics.fmean(vals) if vals else None
            row[c + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        p = PAPER_TABLE1.get(key)
        row["paper"] = {c: p[i] for c, i in PAPER_COLUMNS.items()} if p else None
        rows.append(row)
    return rows


def _cell(r: dict[str, Any], c: str, fmt: str = ".1f", paper: bool = True) -> str:
    if r[c] is None:
        return "–"
    s = f"{r[c]:{fmt}}" + (f" ± {r[c + '_std']:{fmt}}" if len(r["seeds"]) > 1 else "")
    if paper and r["paper"] and c in r["paper"]:
        s += f" ({r['paper'][c]:{'.3g' if c == 'param' else '.1f'}})"
    return s


HEADERS = ("row", "seeds", "epoch of the network / of", "train", "test", "noise σ=1 pixel", "noise σ=1 normalised",
           "PGD eq. (13) ε=2", "worst case ε=2", "λ / μ / scale")


def table1_records(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Table 1 as records of formatted cells (ours, mean ± std over seeds; the paper's value in brackets)."""
    recs = []
    for r in rows:
        cells = [r["row"] + (" (variant)" if r["variant"] else ""), str(len(r["seeds"])),
                 f"{', '.join(map(str, r['network_epochs']))} / {r['epochs']}"]
        cells += [_cell(r, c) for c in ("train", "test", "noise", "noise_normalised", "pgd")]
        cells += [_cell(r, "worst", paper=False), _cell(r, "param", ".3g")]
        recs.append(dict(zip(HEADERS, cells)))
    return recs


def table1_markdown(rows: list[dict[str, Any]]) -> str:
    """Table 1 as a Markdown table (render it with ``IPython.display.Markdown``)."""
    recs = table1_records(rows)
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(rec[h] for h in HEADERS) + " |" for rec in recs]
    return "\n".join(lines)


def format_table1(rows: list[dict[str, Any]]) -> str:
    """Table 1 as fixed-width text for the terminal."""
    recs = table1_records(rows)
    widths = {h: max(len(h), *(len(rec[h]) for rec in recs)) for h in HEADERS}
    lines = ["  ".join(h.ljust(widths[h]) for h in HEADERS)]
    lines += ["  ".join(rec[h].ljust(widths[h]) for h in HEADERS) for rec in recs]
    return "\n".join(lines)


def differences_to_paper(rows: list[dict[str, Any]], threshold: float = 3.0) -> list[tuple[str, str, float, float]]:
    """``(row, column, ours, paper)`` for every accuracy column that differs by more than ``threshold`` points."""
    out = []
    for r in rows:
        if r["paper"] is None or r["variant"]:
            continue
        for c in ("train", "test", "noise", "noise_normalised", "pgd"):
            if abs(r[c] - r["paper"][c]) > threshold:
                out.append((r["row"], c, r[c], r["paper"][c]))
    return out


def separated(a: dict[str, Any], b: dict[str, Any], column: str) -> bool | None:
    """Whether ``a[column] > b[column]`` by more than the seeds' spread: the difference of the means must
    exceed the sum of the two standard deviations (with one seed each, any positive difference counts).
    ``True`` (a above b), ``False`` (b above a, or within the spread), ``None`` if a value is missing."""
    if a[column] is None or b[column] is None:
        return None
    return a[column] - b[column] > a[column + "_std"] + b[column + "_std"]


#: The perturbations the robustness claims are decided under: (column, words).
CLAIM_COLUMNS = (("pgd", "eq. (13) PGD"), ("worst", "the worst case over all attacks"),
                 ("noise_normalised", "Gaussian noise (σ = 1 in the normalised space)"),
                 ("noise", "Gaussian noise (σ = 1 in pixel space)"))


def qualitative_claims(rows: list[dict[str, Any]], dataset: str, clean_gap: float = 3.0) -> list[dict[str, Any]]:
    """The paper's qualitative claims decided on our rows of one dataset, under eq. (13) PGD and under the
    worst case over all attacks.

    1. CLIP at 90 % and at 85 % is more robust than the standard and every weight-regularised net whose
       clean test accuracy is within ``clean_gap`` points of it, under each of :data:`CLAIM_COLUMNS` (the
       paper: "higher robustness ... with respect to noise perturbations and adversarial attacks").
    2. lambda grows as the target falls: lambda(95) < lambda(90) < lambda(85).
    3. Fashion-MNIST only: CLIP is "slightly more prone to noise than the weight-regularized neural
       networks": at each target, the weight-regularised net's noise accuracy (both protocols) is above CLIP's.
    Each claim: ``{"claim", "verdict": "holds" | "fails" | "undecided", "detail"}``. A claim needs at least
    one comparator (otherwise: undecided), and with several seeds a difference counts only when it exceeds
    the seeds' spread (:func:`separated`); a difference inside the spread makes the claim fail.
    """
    by = {r["row"].split("-", 1)[1]: r for r in rows if r["row"].startswith(dataset + "-") and not r["variant"]}
    claims = []
    for t in ("90", "85"):
        clip = by.get(f"clip{t}")
        for column, attack in CLAIM_COLUMNS:
            others = [by[k] for k in ("standard", "weight_reg95", "weight_reg90", "weight_reg85") if k in by]
            similar = [o for o in others if clip and abs(o["test"] - clip["test"]) <= clean_gap]
            outcomes = [separated(clip, o, column) for o in similar]
            if clip is None or not similar or None in outcomes:
                verdict = "undecided"
            else:
                verdict = "holds" if all(outcomes) else "fails"
            detail = "no CLIP row" if clip is None else (
                f"CLIP{t}: {_cell(clip, column, paper=False)} (test {clip['test']:.1f}); similar-accuracy baselines: " +
                (", ".join(f"{o['row'].split('-', 1)[1]} {_cell(o, column, paper=False)} (test {o['test']:.1f})"
                           for o in similar) or "none within the gap"))
            claims.append({"claim": f"CLIP{t} more robust under {attack} than standard/weight-reg nets of similar "
                                    f"clean accuracy", "verdict": verdict, "detail": detail})
    lams = [by.get(f"clip{t}") for t in ("95", "90", "85")]
    if None in lams:
        verdict = "undecided"
    else:
        verdict = "holds" if all(separated(b, a, "param") for a, b in zip(lams, lams[1:])) else "fails"
    claims.append({"claim": "lambda larger for lower targets (95 < 90 < 85)", "verdict": verdict,
                   "detail": "lambda at 95/90/85: " + " / ".join("–" if r is None else _cell(r, "param", ".3g", False)
                                                                 for r in lams)})
    if dataset == "fashion":
        for column, words in CLAIM_COLUMNS[2:]:
            pairs = [(by.get(f"weight_reg{t}"), by.get(f"clip{t}")) for t in ("95", "90", "85")]
            outcomes = [None if w is None or c is None else separated(w, c, column) for w, c in pairs]
            verdict = "undecided" if None in outcomes else ("holds" if all(outcomes) else "fails")
            claims.append({"claim": f"CLIP less robust than weight regularisation under {words} (same target)",
                           "verdict": verdict, "detail": "; ".join(
                               f"{t} %: weight-reg " + ("–" if w is None else _cell(w, column, paper=False)) + " vs CLIP "
                               + ("–" if c is None else _cell(c, column, paper=False))
                               for t, (w, c) in zip(("95", "90", "85"), pairs))})
    return claims


def distance_to_paper(rows: list[dict[str, Any]], columns: Sequence[str] = ("train", "test", "noise_normalised", "pgd"),
                      ) -> dict[str, float | None]:
    """Per column, the mean absolute difference [points] between our rows and the paper's (rows with a paper
    value only; ``None`` when no row has one): how well one reading of Table 1 matches the paper."""
    out: dict[str, float | None] = {}
    for c in columns:
        diffs = [abs(r[c] - r["paper"][c]) for r in rows if r["paper"] and not r["variant"] and r[c] is not None]
        out[c] = statistics.fmean(diffs) if diffs else None
    return out


def compare_readings(results: Sequence[RunResult], dataset: str,
                     columns: Sequence[str] = ("train", "test", "noise_normalised", "pgd")) -> list[dict[str, Any]]:
    """Which reading of Table 1 (selected checkpoints or final networks) is closer to the paper, column by
    column, on the runs of ``dataset`` that keep both networks: ``{"column", "selected", "final", "closer"}``
    with the mean absolute differences [points] of :func:`distance_to_paper`."""
    both = [r for r in results if r["dataset"] == dataset and "final" in r]
    sel, fin = distance_to_paper(table1(both), columns), distance_to_paper(table1(both, "final"), columns)
    recs = []
    for c in columns:
        closer = None if sel[c] is None or fin[c] is None else ("selected" if sel[c] < fin[c] else
                                                                 "final" if fin[c] < sel[c] else "tie")
        recs.append({"column": c, "selected": sel[c], "final": fin[c], "closer": closer})
    return recs


def cascade_saving(r: RunResult) -> list[dict[str, Any]]:
    """What the attack cascade saved on one run, per radius: the cascade's wall time on its ``n`` images
    (``robust["cascade"]``, each attack only on the images every earlier one failed to break) against the same
    attacks run each on every image, estimated from the ladder's per-attack wall times on its ``attacks_n``
    images (``robust["attacks_wall_s"]``) scaled to ``n`` images. Seconds on the run's own device; the two were
    measured in the same process, one after the other. Empty when the run has no ladder."""
    rob = r.get("robust") or {}
    if not rob.get("attacks_wall_s") or not rob.get("cascade"):
        return []
    out = []
    for k, eps in enumerate(rob["eps"]):
        steps = rob["cascade"][k]
        cascade_s = sum(s["wall_s"] for s in steps)
        independent_s = sum(t[k] for t in rob["attacks_wall_s"].values()) * rob["n"] / rob["attacks_n"]
        out.append({"run": r["name"], "eps": eps, "images": rob["n"], "worst case [%]": steps[-1]["accuracy"],
                    "attacked by the last attack": steps[-1]["attacked"], "cascade [s]": cascade_s,
                    "each attack on every image [s]": independent_s, "saving": independent_s / cascade_s})
    return out


def parameter_settling(r: RunResult, last: int = 5, tolerance: float = 1.0) -> dict[str, Any]:
    """Whether a run's regularisation parameter (λ for CLIP, μ for weight regularisation) moved and settled within
    its epochs, from the per-epoch history (values at the end of each epoch): the first epoch where it is > 0, its
    range over the ``last`` epochs beside its range over the whole run, and the epoch-mean training accuracy of
    those epochs against the target [%]. ``on target``: it moved, and the last epochs' mean training accuracy is
    within ``tolerance`` points of the target, which is what the discrepancy principle steers for. The parameter
    itself settles into a band, not onto a value: the rule moves it by ± dλ or ± dμ every step."""
    key = "lam" if r["method"] == "clip" else "mu"
    h = r["history"]
    vals = [e[key] for e in h]
    tail = vals[-last:]
    first = next((e["epoch"] for e in h if e[key] > 0), None)
    acc = [e["train_acc"] for e in h[-last:]]
    mean_acc, target = sum(acc) / len(acc), 100 * r["target"]
    return {"run": r["name"], "parameter": "λ" if key == "lam" else "μ", "first epoch > 0": first,
            f"last {last} epochs": f"{min(tail):.3g} – {max(tail):.3g}", "whole run": f"{min(vals):.3g} – {max(vals):.3g}",
            "end value": f"{vals[-1]:.3g}", f"train acc, last {last} epochs [%]": mean_acc, "target [%]": target,
            "on target": bool(first is not None and abs(mean_acc - target) <= tolerance)}


def bounds_and_certificates(r: RunResult, cert_eps: Sequence[float] = (0.05, 0.1)) -> dict[str, Any]:
    """One run's stored bracket on Lip(f) and what it certifies (``r["beyond"]``, computed by the suite on the
    selected network): the lower bounds (pair search, Jacobian spectral norm; ``lower`` the larger), the product
    bound (4) above, their ratio, the certified accuracy [%] of the product bound at ``cert_eps`` and the median
    certified radius, beside the attacks' worst-case accuracy [%] at ε = 0.5 and 2 on the same network."""
    b = r["beyond"]
    bb = b["bounds"]
    out = {"run": r["name"], "row": r["row"], "method": r["method"], "seed": r["seed"], "pair search": bb["pair_search"],
           "Jacobian": bb["jacobian"], "lower": bb["lower"], "product (4)": bb["upper"],
           "product / lower": bb["upper"] / bb["lower"]}
    for e in cert_eps:
        out[f"certified at ε = {e:g} [%]"] = b["certified_acc"][b["cert_eps"].index(e)]
    out["median certified radius"] = b["median_certified_radius"]
    for e in (0.5, 2.0):
        out[f"attacks' worst case at ε = {e:g} [%]"] = worst_at(r, e)
    return out
