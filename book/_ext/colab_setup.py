"""The first cell of every chapter: installs clipbook when a notebook runs on Colab or Binder.

This file is the ONE place the cell's text lives (``CELL`` below). ``python book/_ext/colab_setup.py`` writes
it, with ``repository.url`` from ``_config.yml`` filled in, as the first cell of every notebook listed in
``_toc.yml`` (replacing an older copy, marked by ``MARKER``); pass notebook paths to touch only those. The
cell is tagged ``remove-cell`` (the HTML never shows it) and does nothing locally or under nbval: it acts
only when ``google.colab`` is imported or a ``BINDER_*`` variable is set (mybinder.org sets
``BINDER_REPO_URL`` and friends). The build (``launch_buttons.py``) warns when a notebook's copy names
another repository than ``_config.yml``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "# clipbook setup for Colab/Binder"
URL_RE = re.compile(r'^CLIPBOOK_REPO = "([^"]*)"', re.M)

CELL = '''# clipbook setup for Colab/Binder (hidden in the HTML; does nothing locally or under nbval)
import os, subprocess, sys
CLIPBOOK_REPO = "{url}"  # repository.url in _config.yml (book/_ext/colab_setup.py writes this cell)
if "google.colab" in sys.modules or any(k.startswith("BINDER_") for k in os.environ):
    try:
        import clipbook  # noqa: F401  (already installed)
    except ImportError:
        # Binder starts in the repository's book/ folder; Colab gets a shallow clone next to the notebook
        root = os.path.abspath("..") if os.path.exists("../pyproject.toml") else os.path.abspath("clipbook")
        if not os.path.exists(os.path.join(root, "pyproject.toml")):
            subprocess.run(["git", "clone", "--depth", "1", CLIPBOOK_REPO, root], check=True)
        # keeps the platform's torch; myst-nb provides `glue` (the book's inline numbers)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", root, "myst-nb"], check=True)
        sys.path.insert(0, root)
    # Data: without CLIPBOOK_DATA, torchvision downloads MNIST / Fashion-MNIST into ~/.cache/clipbook/data;
    # the stored results are read from the repository's results/ folder.'''


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` from ``_config.yml`` (a two-level YAML lookup without needing PyYAML)."""
    import yaml  # jupyter-book depends on PyYAML
    return (yaml.safe_load(config.read_text()).get("repository") or {}).get("url", "")


def cell_source(url: str | None = None) -> str:
    return CELL.format(url=repository_url() if url is None else url)


def setup_cell_url(nb: dict) -> str | None:
    """The repository URL named by the notebook's setup cell, or None when it has none."""
    for cell in nb.get("cells", [])[:3]:
        src = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "code" and src.startswith(MARKER):
            m = URL_RE.search(src)
            return m.group(1) if m else ""
    return None


def write_setup_cell(path: Path, url: str | None = None) -> bool:
    """Insert (or refresh) the setup cell as the notebook's first cell; True when the file changed."""
    text = path.read_text()
    nb = json.loads(text)
    src = cell_source(url)
    cell = {"cell_type": "code", "execution_count": None, "id": "clipbook-setup",
            "metadata": {"tags": ["remove-cell"]}, "outputs": [], "source": src.splitlines(keepends=True)}
    cells = nb["cells"]
    old = next((i for i, c in enumerate(cells[:3]) if c.get("cell_type") == "code"
                and "".join(c.get("source", "")).startswith(MARKER)), None)
    if old is None:
        cells.insert(0, cell)
    else:
        cell["id"] = cells[old].get("id", cell["id"])
        cell["execution_count"] = cells[old].get("execution_count")
        cells[old] = cell
    if nb.get("nbformat_minor", 0) < 5:
        cell.pop("id")
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def toc_notebooks() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{m}.ipynb" for m in re.findall(r"(?:root|file):\s*(\S+)", toc) if (ROOT / f"{m}.ipynb").exists()]


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or toc_notebooks()
    url = repository_url()
    for p in paths:
        print(f"{p}: {'updated' if write_setup_cell(p, url) else 'unchanged'}")
