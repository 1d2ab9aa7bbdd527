"""Sphinx extension: serve MathJax, require.js and the ipywidgets HTML manager from the built site itself.

The files come from the npm registry (pinned versions, checked against npm's sha512 integrity) the first
time a book is built, are cached in ``_build/.vendor-cache`` and copied into ``_static/vendor``. After
that, building needs no network and the HTML never loads anything from a CDN. To vendor by hand on a
machine without npm, unpack the three tarballs into the cache layout below.
"""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

#: package -> (version, files to take from the tarball's ``package/`` folder, target folder)
PACKAGES = {
    "requirejs": ("2.3.6", ["require.js"], ""),
    "@jupyter-widgets/html-manager": ("1.0.6", ["dist/"], "html-manager"),
    "mathjax": ("3.2.2", ["es5/"], "mathjax"),
}
SKIP_SUFFIXES = (".map",)
SKIP_PARTS = ("sre",)  # MathJax's speech-rule engine: large and unused


def _fetch(name: str, version: str, into: Path) -> Path:
    """``npm pack name@version`` into ``into`` and verify the registry's integrity hash."""
    spec = f"{name}@{version}"
    try:
        meta = json.loads(subprocess.run(["npm", "view", spec, "dist", "--json"], capture_output=True, text=True,
                                         check=True, timeout=300).stdout)
        out = subprocess.run(["npm", "pack", spec, "--json"], cwd=into, capture_output=True, text=True,
                             check=True, timeout=600).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"offline_assets: could not fetch {spec} with npm ({err}). Install Node.js/npm or "
                           f"unpack the package into {into.parent} by hand (see book/_ext/offline_assets.py).")
    tgz = into / json.loads(out)[0]["filename"]
    algo, _, want = meta["integrity"].partition("-")
    got = base64.b64encode(hashlib.new(algo, tgz.read_bytes()).digest()).decode()
    if got != want:
        raise RuntimeError(f"offline_assets: integrity check failed for {spec}")
    return tgz


def ensure_vendor(cache: Path) -> Path:
    """Make sure ``cache/vendor`` holds all assets; return it."""
    vendor = cache / "vendor"
    stamp = vendor / ".complete"
    if stamp.exists() and stamp.read_text() == json.dumps(PACKAGES):
        return vendor
    shutil.rmtree(vendor, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, members, target) in PACKAGES.items():
            tgz = _fetch(name, version, Path(tmp))
            with tarfile.open(tgz) as tf:
                for m in tf.getmembers():
                    rel = m.name.removeprefix("package/")
                    if not m.isfile() or rel.endswith(SKIP_SUFFIXES) or any(p in SKIP_PARTS for p in Path(rel).parts):
                        continue
                    for want in members:
                        if rel == want or (want.endswith("/") and rel.startswith(want)):
                            sub = rel[len(want):] if want.endswith("/") else Path(rel).name
                            dest = vendor / target / sub
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            with tf.extractfile(m) as src, open(dest, "wb") as dst:
                                shutil.copyfileobj(src, dst)
    stamp.write_text(json.dumps(PACKAGES))
    return vendor


def _builder_inited(app) -> None:
    if app.builder.format != "html":
        return
    cache = Path(app.outdir).parent / ".vendor-cache"
    vendor = ensure_vendor(cache)
    # html_static_path entries are copied into _static/ (a folder entry copies its content)
    app.config.html_static_path.append(str(vendor.parent))


FONT_SUFFIXES = (".woff", ".woff2", ".ttf", ".eot", ".svg")


def _build_finished(app, exc) -> None:
    """The widget manager's bundle loads its icon fonts from ``<page folder>/@jupyter-widgets/html-manager/
    dist/`` (its webpack public path); put a copy beside every page that uses it."""
    if exc is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    dist = out / "_static" / "vendor" / "html-manager"
    fonts = [f for f in dist.glob("*") if f.suffix in FONT_SUFFIXES]
    folders = {p.parent for p in out.rglob("*.html") if "embed-amd.js" in p.read_text(errors="ignore")}
    for folder in folders:
        dest = folder / "@jupyter-widgets" / "html-manager" / "dist"
        dest.mkdir(parents=True, exist_ok=True)
        for f in fonts:
            shutil.copy2(f, dest / f.name)


def setup(app):
    app.connect("builder-inited", _builder_inited)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
