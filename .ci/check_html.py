"""Browser check of the built book: open every page of ``_build/html`` in headless Chromium and fail on what a
reader would see broken.

Problems (one line each, exit status 1 when there is any):
  * math left as raw TeX: ``$$``, ``\\(``, ``\\[``, ``\\begin{`` or ``$...\\cmd...$`` in visible text outside code,
    a Sphinx math element (``.math``) that MathJax did not render, or math on a page with no ``mjx-container``;
  * a Markdown table left as pipes: a paragraph with a ``| --- |`` row or with lines starting and ending in ``|``;
  * a widget left as "Loading widget..." or showing an error;
  * an image that did not load (``naturalWidth == 0``);
  * a request to the network (the book must work offline);
  * on ``book/05_regression.html``: moving the lambda slider (ipywidgets SelectionSlider) does not change the figure.

Chromium is the system's (Debian: ``apt-get install chromium``), driven by Playwright from PyPI; Playwright never
downloads a browser of its own. Every request that is not a ``file:`` URL is aborted.

Usage: ``python .ci/check_html.py [BUILD_DIR] [--chromium PATH] [--slider-page REL]`` (default ``_build/html``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}

# Everything measured inside the page (returns a plain dict).
PROBE_JS = r"""
() => {
  const SKIP = 'pre, code, script, style, textarea, mjx-container, .highlight, .MathJax, mjx-assistive-mml';
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(SKIP)) continue;
    if (n.nodeValue.trim()) texts.push(n.nodeValue);
  }
  const text = texts.join('\n');
  const rawTex = [];
  for (const re of [/\$\$/, /\\\(/, /\\\[/, /\\begin\{/, /\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/]) {
    const m = text.match(re);
    if (m) {
      const i = m.index;
      rawTex.push(text.slice(Math.max(0, i - 30), i + 40).replace(/\s+/g, ' '));
    }
  }
  const mathEls = [...document.querySelectorAll('.math')];
  const unrendered = mathEls.filter(e => !e.querySelector('mjx-container') && !e.closest('mjx-container')).length;
  const pipes = [];
  for (const p of document.querySelectorAll('p')) {
    if (p.closest(SKIP)) continue;
    const lines = p.innerText.split('\n').map(s => s.trim()).filter(s => s);
    const sep = lines.some(l => /\|\s*:?-{3,}:?\s*\|/.test(l));
    const piped = lines.filter(l => l.length > 2 && l.startsWith('|') && l.endsWith('|')).length;
    if (sep || piped >= 1) pipes.push(p.innerText.slice(0, 60).replace(/\s+/g, ' '));
  }
  const body = document.body.innerText;
  const widgetErrors = [];
  for (const s of ['Loading widget', 'Error displaying widget', 'Error rendering', 'Could not create a view']) {
    if (body.includes(s)) widgetErrors.push(s);
  }
  for (const e of document.querySelectorAll('.jupyter-widgets .widget-error, .jupyter-widgets.jupyter-widgets-error'))
    widgetErrors.push('widget error element');
  const images = [...document.images];
  return {
    mjx: document.querySelectorAll('mjx-container').length,
    mathEls: mathEls.length, unrendered, rawTex, pipes,
    tables: document.querySelectorAll('table').length,
    images: images.length,
    brokenImages: images.filter(i => i.naturalWidth === 0).map(i => (i.getAttribute('src') || '').slice(0, 80)),
    widgetScripts: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetViews: document.querySelectorAll('.jupyter-widgets.widget-slider, .widget-image, .jupyter-widgets.widget-box').length,
    widgetErrors,
  };
}
"""

# Wait for MathJax, the widget manager and every image (lazy ones forced to load).
SETTLE_JS = r"""
async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (const i of document.images) i.loading = 'eager';
  const deadline = Date.now() + 10000;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, sleep(8000)]);
  }
  const nWidgets = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  while (nWidgets && Date.now() < deadline && document.body.innerText.includes('Loading widget')) await sleep(100);
  await Promise.race([
    Promise.all([...document.images].map(i => i.complete ? 1 : new Promise(r => { i.onload = i.onerror = r; }))),
    sleep(Math.max(0, deadline - Date.now())),
  ]);
  return true;
}
"""

# The ipywidgets images on display (a Stack shows one child), as a comparable key.
SHOWN_JS = r"""
async () => {
  const all = [...document.querySelectorAll('.widget-image')];
  const shown = all.filter(i => i.getBoundingClientRect().width > 0 && i.offsetParent !== null);
  if (!shown.length) return null;
  const keys = [];
  for (const i of shown) {
    let digest = 'unreadable';
    try {
      const bytes = new Uint8Array(await (await fetch(i.src)).arrayBuffer());
      let h = 0;
      for (const b of bytes) h = (h * 31 + b) >>> 0;
      digest = bytes.length + ' bytes, hash ' + h.toString(16);
    } catch (e) { digest = i.src.slice(0, 40); }
    keys.push('image ' + all.indexOf(i) + ' of ' + all.length + ' (' + digest + ')');
  }
  return keys.join(', ');
}
"""


def _is_redirect(p: Path) -> bool:
    head = p.read_text(errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head and "<main" not in head


def pages(build: Path) -> list[Path]:
    """Every built page, without assets and without redirect stubs (e.g. the root ``index.html``)."""
    return sorted(p for p in build.rglob("*.html")
                  if not (set(p.relative_to(build).parts[:-1]) & SKIP_DIRS) and not _is_redirect(p))


def check_slider(page, rel: str) -> str | None:
    """Move the first SelectionSlider one step (keyboard, then a click on the track); None when the shown
    figure changed, else the problem."""
    handle = page.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle").first
    if handle.count() == 0:
        return f"{rel}: no lambda slider found (ipywidgets SelectionSlider)"
    before = page.evaluate(SHOWN_JS)
    if before is None:
        return f"{rel}: the slider's figure (ipywidgets Image in a Stack) is not displayed"
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    after = page.evaluate(SHOWN_JS)
    if after == before:
        track = page.locator(".widget-slider .noUi-base, .widget-hslider .noUi-base").first
        box = track.bounding_box()
        if box:
            page.mouse.click(box["x"] + 0.8 * box["width"], box["y"] + box["height"] / 2)
            page.wait_for_timeout(300)
            after = page.evaluate(SHOWN_JS)
    if after == before or after is None:
        return f"{rel}: moving the lambda slider does not change the displayed figure"
    print(f"  {rel}: moving the lambda slider changed the figure: {before} -> {after}")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default="_build/html", type=Path)
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--slider-page", default="book/05_regression.html")
    args = ap.parse_args(argv)
    build = args.build.resolve()
    files = pages(build)
    if not files:
        print(f"check_html: no pages under {build} (build the book first: make book)")
        return 1
    if not Path(args.chromium).exists():
        print(f"check_html: no Chromium at {args.chromium} (Debian: apt-get install chromium; or pass --chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check-html-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=args.chromium, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        blocked: list[str] = []

        def route(r):
            if r.request.url.startswith(("file:", "data:", "blob:")):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e).splitlines()[0][:120]))
        print(f"{'page':<36} {'math':>5} {'tables':>6} {'images':>6} {'widgets':>7}  ok")
        for f in files:
            rel = f.relative_to(build).as_posix()
            blocked.clear()
            errors.clear()
            mine: list[str] = []
            try:
                page.goto(f.as_uri(), wait_until="load", timeout=20000)
                page.evaluate(SETTLE_JS)
                r = page.evaluate(PROBE_JS)
            except Exception as err:  # noqa: BLE001  (report and go on with the next page)
                problems.append(f"{rel}: could not load ({str(err).splitlines()[0]})")
                continue
            for s in r["rawTex"]:
                mine.append(f"{rel}: raw TeX in the text: ...{s}...")
            if r["unrendered"]:
                mine.append(f"{rel}: {r['unrendered']} of {r['mathEls']} math elements not rendered by MathJax")
            if r["mathEls"] and r["mjx"] == 0:
                mine.append(f"{rel}: the page has math but no mjx-container (MathJax did not run)")
            for s in r["pipes"]:
                mine.append(f"{rel}: Markdown table left as pipes: {s!r}")
            for s in sorted(set(r["widgetErrors"])):
                mine.append(f"{rel}: widget problem: {s!r} shown")
            if r["widgetScripts"] and not r["widgetViews"]:
                mine.append(f"{rel}: {r['widgetScripts']} widget(s) in the page but none rendered")
            for s in r["brokenImages"]:
                mine.append(f"{rel}: image not loaded: {s}")
            for u in sorted(set(blocked))[:5]:
                mine.append(f"{rel}: network request (blocked): {u[:100]}")
            slider_msg = check_slider(page, rel) if rel == args.slider_page else None
            if slider_msg:
                mine.append(slider_msg)
            print(f"{rel:<36} {r['mjx']:>5} {r['tables']:>6} {r['images']:>6} {r['widgetScripts']:>7}  "
                  f"{'yes' if not mine else 'NO (' + str(len(mine)) + ')'}")
            problems += mine
        ctx.close()
    if args.slider_page not in {f.relative_to(build).as_posix() for f in files}:
        problems.append(f"{args.slider_page}: page missing, the lambda slider was not checked")
    print(f"{len(files)} pages in {time.perf_counter() - t0:.1f} s; {len(problems)} problem(s)")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
