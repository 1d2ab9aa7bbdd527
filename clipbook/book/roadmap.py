"""The book's roadmap: its chapters as boxes in four stages (theory -> algorithm -> experiments -> beyond), with
arrows for "builds on", drawn by matplotlib for the landing page.

The chapter titles are read from the notebooks (their first ``# `` heading), in the order of ``_toc.yml``, so
the figure follows the book when a chapter is renamed; which stage a chapter belongs to and what it builds on
are stated here (:data:`STAGES`, :data:`BUILDS_ON`)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

#: stage of each chapter (by its notebook's number) and the paper section it covers
STAGES = {
    1: ("start", "overview, how to run it"),
    2: ("theory", "Sec. 1-2: constants, bounds"),
    3: ("algorithm", "Sec. 3: Algorithms 1 and 2"),
    4: ("theory", "Sec. 3: existence, limits in λ"),
    5: ("experiments", "Sec. 4.1: regression, Fig. 2"),
    6: ("experiments", "Sec. 4.2: MNIST, Table 1"),
    7: ("beyond", "bounds, certificates, attacks"),
    8: ("start", "references"),
}
#: chapter -> the chapters it builds on
BUILDS_ON = {3: [2], 4: [3], 5: [3], 6: [3], 7: [2, 6]}
COLUMNS = ["theory", "algorithm", "experiments", "beyond"]
COLORS = {"theory": "#dbe9f6", "algorithm": "#fde2c8", "experiments": "#d9f0d3", "beyond": "#eadcf0", "start": "#eeeeee"}


def chapters(root: str | Path = "..") -> list[tuple[int, str]]:
    """(number, title) of every chapter, in the order of ``root/_toc.yml``; the number is the notebook's
    prefix (``book/05_regression`` -> 5), the title its first ``# `` heading."""
    root = Path(root)
    files = re.findall(r"(?:root|file):\s*(\S+)", (root / "_toc.yml").read_text())
    out = []
    for f in files:
        nb = json.loads((root / f"{f}.ipynb").read_text())
        title = next((line[2:].strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                      for line in "".join(c["source"]).splitlines() if line.startswith("# ")), Path(f).name)
        out.append((int(re.match(r"(\d+)", Path(f).name).group(1)), title))
    return out


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join(lines + [cur])


def roadmap_figure(chs: list[tuple[int, str]]) -> plt.Figure:
    """Chapters 2-7 as boxes in the four stage columns (top to bottom in chapter order within a column), arrows
    from each chapter to the ones that build on it; chapter 1 (start) on top."""
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    ax.set_xlim(0, 4); ax.set_ylim(0.3, 4.3); ax.axis("off")
    titles = dict(chs)
    pos: dict[int, tuple[float, float]] = {}
    rows: dict[str, int] = {}
    for n, _ in chs:
        stage = STAGES.get(n, ("beyond", ""))[0]
        if stage == "start":
            continue
        col = COLUMNS.index(stage)
        k = rows.get(stage, 0)
        rows[stage] = k + 1
        pos[n] = (col + 0.5, 2.5 - 1.45 * k)
    for col, stage in enumerate(COLUMNS):
        ax.text(col + 0.5, 3.55, stage, ha="center", va="center", fontsize=11, weight="bold")
    w, h = 0.92, 1.2
    for n, (x, y) in pos.items():
        stage, sec = STAGES[n]
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    fc=COLORS[stage], ec="0.4", lw=1))
        ax.text(x, y + 0.44, f"Chapter {n}", ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x, y + 0.02, _wrap(titles[n], 24), ha="center", va="center", fontsize=8.5, linespacing=1.15)
        ax.text(x, y - 0.46, sec, ha="center", va="center", fontsize=7.5, color="0.3", style="italic")
    if 1 in titles:
        ax.add_patch(FancyBboxPatch((1.2, 3.85), 1.6, 0.35, boxstyle="round,pad=0.02,rounding_size=0.06",
                                    fc=COLORS["start"], ec="0.4", lw=1))
        ax.text(2.0, 4.025, f"Chapter 1: {titles[1]}", ha="center", va="center", fontsize=9)
    for n, srcs in BUILDS_ON.items():
        for m in srcs:
            if n not in pos or m not in pos:
                continue
            (x0, y0), (x1, y1) = pos[m], pos[n]
            if x0 == x1:                      # same column: down
                start, end, rad = (x0, y0 - h / 2), (x1, y1 + h / 2), 0.0
            elif abs(x1 - x0) > 1.5:          # across a column: over the top of the boxes between
                start, end, rad = (x0 + 0.2, y0 + h / 2), (x1 - 0.2, y1 + h / 2), -0.12
            else:                             # next column: side to side
                sx = w / 2 if x1 > x0 else -w / 2
                start, end = (x0 + sx, y0), (x1 - sx, y1)
                rad = 0.0 if abs(y1 - y0) < 1e-9 else (0.2 if (x1 > x0) == (y1 < y0) else -0.2)
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.35", lw=1,
                                         connectionstyle=f"arc3,rad={rad}"))
    ax.set_title("How the chapters build on each other (an arrow: builds on)", fontsize=10)
    fig.tight_layout()
    return fig
