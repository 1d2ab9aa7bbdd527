"""Sphinx extension: Binder/Colab launch buttons only for a real repository.

``repository.url`` in ``_config.yml`` is the one place the repository is named. Jupyter Book turns it into
``html_theme_options['repository_url']`` and the ``launch_buttons`` section into
``html_theme_options['launch_buttons']``. While the URL is a placeholder (:data:`PLACEHOLDERS`, or empty) the
launch buttons and the repository button would lead nowhere, so this extension drops them; once the URL names
the public repository they appear unchanged. It also checks that every notebook's Colab/Binder setup cell
(``book/_ext/colab_setup.py``) names the same repository, and warns otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: URLs that mean "no public repository yet".
PLACEHOLDERS = {"", "https://github.com/clipbook/clipbook", "https://github.com/OWNER/REPO"}


def is_placeholder(url: str | None) -> bool:
    return (url or "").strip().rstrip("/") in PLACEHOLDERS


def _config_inited(app, config) -> None:
    opts = dict(config.html_theme_options or {})
    url = opts.get("repository_url", "")
    if is_placeholder(url):
        opts["launch_buttons"] = {}
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button",
                    "use_source_button", "use_download_button_for_repository"):
            if key in opts:
                opts[key] = False
        config.html_theme_options = opts
        logger.info(f"launch_buttons: repository.url {url!r} is a placeholder; Binder/Colab and repository "
                    "buttons are hidden (set repository.url in _config.yml to show them)")
    _check_setup_cells(app, url)


def _check_setup_cells(app, url: str) -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from colab_setup import setup_cell_url
    finally:
        sys.path.pop(0)
    for nb_path in sorted(Path(app.srcdir).glob("book/*.ipynb")):
        try:
            named = setup_cell_url(json.loads(nb_path.read_text()))
        except (OSError, ValueError):
            continue
        if named is not None and named.rstrip("/") != (url or "").rstrip("/"):
            logger.warning(f"{nb_path.name}: the Colab/Binder setup cell names {named!r}, _config.yml's "
                           f"repository.url is {url!r}; run `python book/_ext/colab_setup.py` to refresh the cells")


def setup(app):
    app.connect("config-inited", _config_inited, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
