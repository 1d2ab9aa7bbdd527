"""Sphinx extension: the book's own CSS, ``book/_static/clipbook.css`` (wide outputs may use the strip of the
"On this page" sidebar; figures at their natural size; wide tables scroll). ``make check-html`` measures what
it is for: no figure shown under 90 % of the room the page has, no table cut off."""
from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "_static"


def _builder_inited(app) -> None:
    # html_static_path entries are copied into _static/ (a folder entry copies its content)
    app.config.html_static_path.append(str(STATIC))
    app.add_css_file("clipbook.css")


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
