"""Browser check of the built book: open every page of ``_build/html`` in headless Chromium and fail on what a
reader would see broken.

Problems (one line each, exit status 1 when there is any):
  * math left as raw TeX: ``$$``, ``\\(``, ``\\[``, ``\\begin{`` or ``$...\\cmd...$`` in visible text outside code,
    a Sphinx math element (``.math``) that MathJax did not render, or math on a page with no ``mjx-container``;
  * a stray ``$`` or a TeX command (``\\lambda``, ``\\cdot``) in visible text outside code and math (unbalanced
    dollars), and prose typeset as math: a formula whose TeX, outside ``\\text{}``/``\\operatorname{}``/..., has
    a run of 10 or more letters or three words in a row (TeX drops the spaces: "hassolutionforallvalues");
  * a MyST role or directive left as text (``{glue:text}``, ``{cite}``, ``:::{note}``), also inside inline code,
    and a backtick in visible text (Markdown left over);
  * an unformatted float in visible text (six or more decimals: ``0.000000``, ``76.279998``), e.g. a table
    rendered with pandas' default float format;
  * a Markdown table left as pipes: a paragraph with a ``| --- |`` row or with lines starting and ending in ``|``;
  * a table that does not fit the room the page offers it (cut off on the right: without a scroll container it
    overflows, with one the reader has to scroll sideways), and a table row taller than ``--max-row-px`` (cells
    wrapped into very tall rows);
  * an image shown at under ``--min-scale`` (90 %) of ``min(natural width, room)`` (a figure shrunk by CSS or
    image options); every image counts, static or in a widget. The *room* is the width from the content column's
    left edge to the right edge of the main area: the column plus the strip of the "On this page" sidebar, which
    the theme collapses to a 3 rem bar while the reader scrolls (on a screen without that sidebar, the column);
  * a widget frame (an image inside an ipywidgets output) below the stated resolution: a PNG whose dpi is under
    ``--min-widget-dpi`` (90; 8-pt text is then under 10 px at natural size), or one shown wider than its natural
    width (upscaled, blurred);
  * a widget left as "Loading widget..." or showing an error;
  * an image that did not load (``naturalWidth == 0``);
  * a request to the network (the book must work offline);
  * on ``book/05_regression.html``: moving the lambda slider (ipywidgets SelectionSlider) does not change the figure.

Pages are opened at ``--width`` x 900 CSS pixels (1280: a laptop screen) at device pixel ratio 1.

Chromium is the system's (Debian: ``apt-get install chromium``), driven by Playwright from PyPI; Playwright never
downloads a browser of its own. Every request that is not a ``file:`` URL is aborted.

Usage: ``python .ci/check_html.py [BUILD_DIR] [--chromium PATH] [--slider-page REL] [--width PX]`` (default
``_build/html``).
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
  const texts = [], nodes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(SKIP)) continue;
    if (n.nodeValue.trim()) { texts.push(n.nodeValue); nodes.push(n); }
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
  // per text node (outside code and math): stray dollars, TeX commands, MyST roles, unformatted floats
  // a match in its block's text, 40 characters either side (a text node alone can be a lone "$")
  const snip = (node, i, n) => {
    const block = node.parentElement.closest('p, li, td, th, dt, dd, h1, h2, h3, h4, h5, h6, blockquote, div') || node.parentElement;
    const all = block.textContent, at = all.indexOf(node.nodeValue);
    const j = (at >= 0 ? at : 0) + i;
    return all.slice(Math.max(0, j - 40), j + n + 40).replace(/\s+/g, ' ').trim();
  };
  const strayDollar = [], texCmd = [], rawRoles = [], rawFloats = [];
  const ROLE = /\{(?:glue|cite|ref|numref|eq|doc|term|math|download|abbr|sub|sup|index|bibliography|dropdown|admonition|note|tip|warning|important|figure|image|code-cell|list-table|table|toctree|[a-z]+:[a-z:-]+)\}/;
  // six or more decimals and six or more significant digits (76.279998, 10.391518), or only zeros (0.000000):
  // pandas' default float format; 0.000789 (three significant digits) is a formatted number
  const unformatted = t => {
    const sig = t.replace(/^-/, '').replace('.', '').replace(/^0+/, '');
    return sig.length >= 6 || /^0+$/.test(sig) || sig === '';
  };
  for (const node of nodes) {
    const v = node.nodeValue;
    let m;
    if ((m = v.match(/\$/))) strayDollar.push(snip(node, m.index, 1));
    if ((m = v.match(/\\[A-Za-z]{2,}/))) texCmd.push(snip(node, m.index, m[0].length));
    if ((m = v.match(ROLE)) || (m = v.match(/(?:^|\n)\s*(?::::|```)\s*\{[a-z]/))) rawRoles.push(snip(node, m.index, m[0].length));
    else if ((m = v.match(/`/))) rawRoles.push('(a backtick) ' + snip(node, m.index, 1));
    for (const f of v.matchAll(/(?<![\w.])-?\d+\.\d{6,}(?![\d])/g)) {
      if (unformatted(f[0])) { rawFloats.push(snip(node, f.index, f[0].length)); break; }
    }
  }
  // inline code (not code blocks) holding a role as it is written, e.g. ``{glue:text}`name` `` in double backticks
  for (const c of document.querySelectorAll('code')) {
    if (c.closest('pre, .highlight, script, style')) continue;
    const m = c.textContent.match(/\{[a-z]+(?::[a-z-]+)*\}(?:`|$)/);
    if (m) rawRoles.push('(in inline code) ' + c.textContent.slice(0, 60));
  }
  // prose typeset as math: a run of >= 10 letters in the TeX source, outside text-like macros and commands
  const mathProse = [];
  try {
    const items = (window.MathJax && MathJax.startup && MathJax.startup.document)
      ? MathJax.startup.document.getMathItemsWithin(document.body) : [];
    for (const it of items) {
      const tex = String(it.math || '');
      const bare = tex.replace(/\\(?:text\w*|operatorname\*?|math(?:rm|bf|it|sf|tt|cal|bb|frak)|mbox|hbox|label|tag|ref|eqref|begin|end|color|href|url)\s*\{[^{}]*\}/g, ' ')
                      .replace(/\\[A-Za-z]+/g, ' ');
      // TeX ignores spaces in math: "has a solution for all values" is set as one italic run
      const m = bare.match(/[A-Za-z]{10,}/) || bare.match(/[A-Za-z]{2,}(?:\s+[A-Za-z]+){2,}/);
      if (m) mathProse.push(tex.replace(/\s+/g, ' ').slice(0, 90));
    }
  } catch (e) { mathProse.push('could not read the MathJax items: ' + e); }
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
    mathEls: mathEls.length, unrendered, rawTex, pipes, strayDollar, texCmd, rawRoles, rawFloats, mathProse,
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

# Layout in the page: the content column, every table and every image (async: PNG frames are read for their dpi).
LAYOUT_JS = r"""
async (opts) => {
  const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const cs = getComputedStyle(col);
  const cr = col.getBoundingClientRect();
  const colLeft = cr.left + parseFloat(cs.paddingLeft), colWidth = col.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const colRight = colLeft + colWidth;
  // the room the page offers an output: from the column's left edge to the right edge of the main area (less the
  // article's padding), i.e. the content column plus the strip of the "On this page" sidebar, which the theme
  // collapses to a 3 rem bar while the reader scrolls; on a narrow screen (no sidebar strip) just the column
  const main = document.querySelector('.bd-main');
  const roomRight = main ? Math.max(colRight, main.getBoundingClientRect().right - parseFloat(cs.paddingRight)) : colRight;
  const where = el => {
    const sec = el.closest('section[id]');
    const cell = el.closest('.cell');
    const n = cell ? [...document.querySelectorAll('.cell')].indexOf(cell) : -1;
    return (sec ? '#' + sec.id : 'page') + (n >= 0 ? ', code cell ' + n : '');
  };
  const tables = [];
  for (const t of col.querySelectorAll('table')) {
    const r = t.getBoundingClientRect();
    if (!r.width) continue;
    // a scroll container between the table and the column keeps a wide table readable
    let scroller = null;
    for (let a = t.parentElement; a && a !== col; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && a.getBoundingClientRect().right <= roomRight + 1) { scroller = a; break; }
    }
    const room = Math.round(roomRight - Math.max(colLeft, (scroller || t.parentElement).getBoundingClientRect().left));
    const rows = [...t.rows].map(row => row.getBoundingClientRect().height);
    const tallest = rows.length ? Math.max(...rows) : 0;
    const head = (t.innerText || '').split('\n').map(x => x.trim()).filter(x => x)[0] || '';
    tables.push({where: where(t), width: Math.round(r.width), right: Math.round(r.right - roomRight), scroll: !!scroller, room,
                 height: Math.round(r.height), tallest: Math.round(tallest), rows: rows.length, head: head.slice(0, 50)});
  }
  const dpiOf = async src => {
    try {
      const b = new Uint8Array(await (await fetch(src)).arrayBuffer());
      if (b[0] !== 0x89 || b[1] !== 0x50) return null;          // not a PNG
      for (let i = 8; i + 8 <= b.length;) {
        const len = ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
        const type = String.fromCharCode(b[i + 4], b[i + 5], b[i + 6], b[i + 7]);
        if (type === 'pHYs') {
          const ppu = ((b[i + 8] << 24) | (b[i + 9] << 16) | (b[i + 10] << 8) | b[i + 11]) >>> 0;
          return b[i + 16] === 1 ? Math.round(ppu * 0.0254) : null;
        }
        if (type === 'IDAT' || type === 'IEND') return null;
        i += 12 + len;
      }
    } catch (e) { return null; }
    return null;
  };
  const images = [];
  for (const img of col.querySelectorAll('img')) {
    if (!img.naturalWidth) continue;
    const r = img.getBoundingClientRect();
    const isWidget = img.classList.contains('widget-image') || !!img.closest('.jupyter-widgets');
    const shown = r.width > 0 && img.offsetParent !== null;
    // the width this image may take: from its container's left edge (content box) to the right edge of the room
    const pr = img.parentElement.getBoundingClientRect(), ps = getComputedStyle(img.parentElement);
    const room = roomRight - Math.max(colLeft, pr.left + parseFloat(ps.paddingLeft) + parseFloat(ps.borderLeftWidth));
    images.push({where: where(img), widget: isWidget, shown, natural: img.naturalWidth, shownWidth: Math.round(r.width),
                 room: Math.round(room), dpi: isWidget ? await dpiOf(img.src) : null,
                 src: (img.getAttribute('src') || '').slice(0, 60)});
  }
  return {colWidth: Math.round(colWidth), room: Math.round(roomRight - colLeft), tables, images};
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


def layout_problems(rel: str, lay: dict, args) -> list[str]:
    """Tables wider than the column or with very tall rows, shrunk images, low-resolution widget frames."""
    out = []
    for t in lay["tables"]:
        if t["right"] > 1 and not t["scroll"]:
            out.append(f"{rel} ({t['where']}): table {t['head']!r} is {t['width']} px wide, {t['right']} px past the "
                       f"right edge of the page's {lay['room']} px room (cut off, no scroll container)")
        elif t["width"] > t["room"] + 1:
            out.append(f"{rel} ({t['where']}): table {t['head']!r} is {t['width']} px wide in {t['room']} px of room "
                       f"(content column {lay['colWidth']} px): cut off on the right, the reader has to scroll sideways")
        if t["tallest"] > args.max_row_px:
            out.append(f"{rel} ({t['where']}): table {t['head']!r} has a row {t['tallest']} px tall (limit "
                       f"{args.max_row_px}; cells wrap), {t['rows']} rows, {t['height']} px in all")
    low_dpi: dict[str, list[int]] = {}
    for im in lay["images"]:
        if im["widget"] and im["dpi"] is not None and im["dpi"] < args.min_widget_dpi:
            low_dpi.setdefault(im["where"], []).append(im["dpi"])
        if not im["shown"]:
            continue
        want = min(im["natural"], im["room"])
        if im["shownWidth"] < args.min_scale * want:
            out.append(f"{rel} ({im['where']}): {'widget frame' if im['widget'] else 'image'} shown {im['shownWidth']} px "
                       f"wide, {100 * im['shownWidth'] / im['natural']:.0f} % of its natural {im['natural']} px, while "
                       f"the page has {im['room']} px of room for it (content column {lay['colWidth']} px)")
        if im["widget"] and im["shownWidth"] > 1.1 * im["natural"]:
            out.append(f"{rel} ({im['where']}): widget frame upscaled: natural {im['natural']} px shown {im['shownWidth']} px")
    for where, dpis in low_dpi.items():
        out.append(f"{rel} ({where}): {len(dpis)} widget frame(s) at {min(dpis)} dpi (at least {args.min_widget_dpi} "
                   f"required: at {min(dpis)} dpi 8-pt text is {8 * min(dpis) / 72:.1f} px tall)")
    return out


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
    ap.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    ap.add_argument("--min-scale", type=float, default=0.9,
                    help="an image must be shown at this fraction of min(natural width, room in the column)")
    ap.add_argument("--max-row-px", type=int, default=100, help="tallest table row allowed, in CSS pixels")
    ap.add_argument("--min-widget-dpi", type=int, default=90, help="lowest dpi of a widget frame (PNG pHYs)")
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
                                                   args=CHROMIUM_ARGS, viewport={"width": args.width, "height": 900})
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
                lay = page.evaluate(LAYOUT_JS)
            except Exception as err:  # noqa: BLE001  (report and go on with the next page)
                problems.append(f"{rel}: could not load ({str(err).splitlines()[0]})")
                continue
            for s in r["rawTex"]:
                mine.append(f"{rel}: raw TeX in the text: ...{s}...")
            if r["unrendered"]:
                mine.append(f"{rel}: {r['unrendered']} of {r['mathEls']} math elements not rendered by MathJax")
            if r["mathEls"] and r["mjx"] == 0:
                mine.append(f"{rel}: the page has math but no mjx-container (MathJax did not run)")
            for s in r["strayDollar"]:
                mine.append(f"{rel}: stray $ in the text (unbalanced math): ...{s}...")
            for s in r["texCmd"]:
                mine.append(f"{rel}: TeX command in the text, outside math: ...{s}...")
            for s in r["mathProse"]:
                mine.append(f"{rel}: words run together in math italics (prose inside $...$): {s}")
            for s in r["rawRoles"]:
                mine.append(f"{rel}: MyST role or directive left as text: ...{s}...")
            for s in r["rawFloats"][:3]:
                mine.append(f"{rel}: unformatted float in the text: ...{s}...")
            if len(r["rawFloats"]) > 3:
                mine.append(f"{rel}: ... and {len(r['rawFloats']) - 3} more text nodes with unformatted floats")
            mine += layout_problems(rel, lay, args)
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
