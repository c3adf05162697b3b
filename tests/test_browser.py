"""The rendered book as a reader meets it, in headless Chromium: every chapter page loads, shows its figures and
has no error output, and fits a 1280 px wide window: nothing overflows the page sideways, and a table wider than the
text (a DataFrame, a Markdown table) scrolls inside its own box. Every page of ``_toc.yml`` gets a 1280 px wide
screenshot, ``<page>.png`` (its full height up to 8,000 px), and the index gets ``index.png``, kept as test
artefacts in ``_build/test-artifacts/`` (ignored by git). Every equation is typeset by MathJax, served with the book
(``sphinx-mathjax-offline``, so offline too): a page fails when its visible text still holds a raw math delimiter
(``\\(``, ``\\)``, ``\\[``, ``\\]``, ``$$``) or MathJax reports an error; a planted broken equation shows that it
can.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the test is skipped
locally, but fails when ``UNLEARNLIB_REQUIRE_BROWSER=1`` (set by CI), so CI cannot pass it silently.
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading

import nbformat
import pytest
import yaml

from unlearnlib.book import toc_chapters
from unlearnlib.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "_build" / "test-artifacts"
WIDTH, HEIGHT, MAX_SHOT_HEIGHT = 1280, 1600, 8000  # the window every page is checked in; the screenshots' cap
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or shutil.which("chromium-browser") or "")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "")


def _browser_or_skip():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        message = (f"headless browser check needs {', '.join(missing)}: apt-get install chromium chromium-driver")
        if os.environ.get("UNLEARNLIB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """The built HTML served on a free localhost port."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _visible_figures(nb) -> int:
    """Image outputs of cells whose outputs the book shows (not removed by a tag)."""
    hidden = {"remove-cell", "remove-output", "remove_cell", "remove_output"}
    return sum(1 for c in nb.cells if c.cell_type == "code" and not hidden & set(c.metadata.get("tags", []))
               for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


def _page_state(driver) -> dict:
    """What the loaded page shows: its title, its images served by the book (and which of them failed to load) and
    any error output. External images (the Colab badge) are left out: the test runs offline."""
    return driver.execute_script("""
        const imgs = Array.from(document.querySelectorAll('main img, article img'))
                          .filter(i => i.src.startsWith(window.location.origin));
        const article = document.querySelector('main') || document.body;
        return {
          title: document.title,
          images: imgs.length,
          broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
          errors: Array.from(document.querySelectorAll('.output.error, .output.traceback, .cell_output .traceback'))
                    .map(e => e.innerText.slice(0, 200)),
          text: article.innerText,
          math: document.querySelectorAll('span.math, div.math, mjx-container').length,
        };""")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", toc_chapters(), ids=[p.stem for p in toc_chapters()])
def test_chapter_page_loads_with_its_figures_and_no_error_output(chapter, site, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site}/chapters/{chapter.stem}.html")
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 30).until(lambda d: not _page_state(d)["broken"] or d.execute_script(
        "return Array.from(document.images).every(i => i.complete)"))
    state = _page_state(browser)
    assert "404" not in state["title"] and state["text"].strip(), f"{chapter.stem}: the page did not load"
    assert not state["broken"], f"{chapter.stem}: images that did not load: {state['broken'][:5]}"
    assert not state["errors"], f"{chapter.stem}: error output on the page: {state['errors'][:3]}"
    for marker in ("Traceback (most recent call last)", "PapermillExecutionError"):
        assert marker not in state["text"], f"{chapter.stem}: {marker!r} shown on the page"
    nb = nbformat.read(chapter, as_version=4)
    if any("$" in c.source for c in nb.cells if c.cell_type == "markdown"):
        assert state["math"] > 0, f"{chapter.stem}: its equations are not marked up as math on the page"
    expected = _visible_figures(nb)
    assert state["images"] >= expected, f"{chapter.stem}: {expected} figures in the notebook, {state['images']} shown"


def _toc_pages(node=None) -> list[str]:
    """Every page listed in ``_toc.yml`` below the root (``chapters/ssd``), notebooks and Markdown pages alike: the
    runs page holds the book's widest Markdown table."""
    if node is None:
        node = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    if isinstance(node, list):
        return [page for item in node for page in _toc_pages(item)]
    if isinstance(node, dict):
        return ([node["file"]] if "file" in node else []) + [page for v in node.values() for page in _toc_pages(v)]
    return []


# What sticks out sideways. The page: the document is wider than the window. The article: an element reaches past
# the article's right edge (under the page's table of contents, or off the page) without a box inside the article
# that scrolls or clips it. A table: it is wider than its container and no element between it and the article
# scrolls it (computed overflow-x auto or scroll). Elements are named by tag, id and classes, with their section.
_OVERFLOW_JS = """
const root = document.documentElement;
const art = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const artRight = art.getBoundingClientRect().right;
const name = e => {
  const sec = e.closest('section[id]');
  return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + [...e.classList].map(c => '.' + c).join('')
         + (sec ? ' in section #' + sec.id : '');
};
const boxBetween = (e, kinds) => {
  for (let a = e.parentElement; a && a !== art; a = a.parentElement)
    if (kinds.includes(getComputedStyle(a).overflowX)) return a;
  return null;
};
const out = [];
for (const e of art.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.right <= artRight + 1 || boxBetween(e, ['auto', 'scroll', 'hidden', 'clip'])) continue;
  const p = e.parentElement;
  if (p !== art && p.getBoundingClientRect().right > artRight + 1) continue;  // name the outermost one only
  out.push(`${name(e)}: right edge at ${Math.round(r.right)} px, the article ends at ${Math.round(artRight)} px`);
}
const tables = [];
for (const t of art.querySelectorAll('table')) {
  const box = t.parentElement.clientWidth;
  if (t.offsetWidth <= box + 1 || boxBetween(t, ['auto', 'scroll'])) continue;
  tables.push(`${name(t)}: ${t.offsetWidth} px wide in a ${box} px container that does not scroll`);
}
return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, article: out, tables: tables,
        height: Math.max(document.body.scrollHeight, root.scrollHeight)};
"""


@pytest.mark.slow
@pytest.mark.parametrize("page", _toc_pages(), ids=lambda page: page.rsplit("/", 1)[-1])
def test_page_fits_1280px_and_wide_tables_scroll_in_their_box(page, site, browser):
    """At 1280 px the page never scrolls sideways: a wide table scrolls inside its own box. Saves a 1280 px wide
    screenshot of the page's full height (up to 8,000 px) as ``<page>.png``."""
    from selenium.webdriver.support.ui import WebDriverWait

    name = page.rsplit("/", 1)[-1]
    browser.set_window_size(WIDTH, HEIGHT)
    try:
        browser.get(f"{site}/{page}.html")
        WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            "return Array.from(document.images).every(i => i.complete)"))
        browser.set_script_timeout(45)
        browser.execute_async_script(_MATH_WAIT_JS)  # measured with the equations typeset: a wide one can stick out
        found = browser.execute_script(_OVERFLOW_JS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.set_window_size(WIDTH, min(max(found["height"], HEIGHT), MAX_SHOT_HEIGHT))
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    finally:
        browser.set_window_size(WIDTH, HEIGHT)
    assert found["scrollWidth"] <= found["clientWidth"] + 1, (
        f"{name}: the page is {found['scrollWidth']} px wide in a {found['clientWidth']} px window and scrolls "
        f"sideways; what sticks out: {found['article'][:5] or found['tables'][:5]}")
    assert not found["tables"], f"{name}: tables wider than their box that do not scroll in it: {found['tables'][:5]}"
    assert not found["article"], f"{name}: content sticking out of the article: {found['article'][:5]}"
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, f"{name}: the screenshot is blank"


# Math as the reader sees it, once MathJax has typeset the page (the promise of its first typeset has resolved).
# unrendered: an equation Sphinx marked up (span.math, div.math) that holds no typeset mjx-container. raw: visible
# text outside code and typeset math that still holds a math delimiter: an equation MathJax did not find (an
# unbalanced brace hides its closing delimiter) or did not run on. errors: MathJax's error boxes (mjx-merror: a
# double exponent, a missing \right, an unknown environment). undefined: a control sequence MathJax does not know,
# which it shows in red as "\name". Errors name the equation's TeX source where MathJax still holds it.
_MATH_WAIT_JS = """
const done = arguments[arguments.length - 1];
const t0 = Date.now();
(function wait() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise)
    MathJax.startup.promise.then(() => done('typeset'), e => done('MathJax failed: ' + e));
  else if (!document.querySelector('script[src*="mathjax" i]')) done('not loaded');
  else if (Date.now() - t0 > 30000) done('MathJax did not start within 30 s');
  else setTimeout(wait, 50);
})();
"""
_MATH_JS = r"""
const where = e => { const s = e.closest('section[id]'); return s ? ` (section #${s.id})` : ''; };
const cut = t => t.replace(/\s+/g, ' ').trim().slice(0, 120);
const tex = new Map();
try { for (const item of MathJax.startup.document.math) if (item.typesetRoot) tex.set(item.typesetRoot, item.math); }
catch (e) {}
const marked = Array.from(document.querySelectorAll('span.math, div.math')).filter(e => !e.closest('pre, code'));
const unrendered = marked.filter(e => !e.querySelector('mjx-container')).map(e => cut(e.textContent) + where(e));
const raw = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const p = n.parentElement;
  const i = n.data.search(/\\[()\[\]]|\$\$/);
  if (i < 0 || !p || p.closest('pre, code, .highlight, mjx-container, script, style, textarea, noscript')) continue;
  if (p.checkVisibility && !p.checkVisibility()) continue;
  raw.push(cut(n.data.slice(Math.max(0, i - 40), i + 80)) + where(p));
}
const errors = [], undefined_ = [];
for (const c of document.querySelectorAll('mjx-container')) {
  const source = tex.has(c) ? ` in ${cut(tex.get(c))}` : '';
  const merror = c.querySelector('mjx-merror');
  const texts = Array.from(c.querySelectorAll('mtext, mjx-mtext')).map(m => m.textContent.trim());
  const name = !merror && (texts.find(t => /^\\[A-Za-z]+$/.test(t)) || (c.textContent.match(/\\[A-Za-z]+/) || [])[0]);
  if (merror) errors.push((merror.getAttribute('data-mjx-error') || cut(merror.textContent)) + source + where(c));
  else if (name) undefined_.push(name + source + where(c));
}
return {marked: marked.length, rendered: document.querySelectorAll('mjx-container').length,
        unrendered: unrendered, raw: raw, errors: errors, undefined: undefined_};
"""


def _math_state(driver, url: str) -> dict:
    """Loads ``url``, waits for MathJax's first typeset and returns what ``_MATH_JS`` finds, with ``mathjax``: typeset,
    not loaded (a page without math) or why MathJax did not finish."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    driver.set_script_timeout(45)
    status = driver.execute_async_script(_MATH_WAIT_JS)
    return {"mathjax": status, **driver.execute_script(_MATH_JS)}


def _math_problems(state: dict) -> list[str]:
    problems = []
    if state["mathjax"] not in ("typeset", "not loaded"):
        problems.append(state["mathjax"])
    for key, what in (("unrendered", "equations not typeset"), ("raw", "raw math delimiters in the visible text"),
                      ("errors", "MathJax errors"), ("undefined", "undefined control sequences")):
        if state[key]:
            problems.append(f"{len(state[key])} {what}: {state[key][:3]}")
    return problems


def _root_and_toc_pages() -> list[str]:
    return [yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())["root"]] + _toc_pages()


@pytest.mark.slow
@pytest.mark.parametrize("page", _root_and_toc_pages(), ids=lambda page: page.rsplit("/", 1)[-1])
def test_every_equation_is_typeset_offline(page, site, browser):
    """MathJax, served with the book, typesets every equation of the page without an error, and no raw math
    delimiter is left in its visible text."""
    state = _math_state(browser, f"{site}/{page}.html")
    problems = _math_problems(state)
    assert not problems, f"{page}: " + "; ".join(problems)
    assert state["rendered"] >= state["marked"], f"{page}: {state['marked']} equations, {state['rendered']} typeset"


def _planted(html: str, equations: list[str]) -> str:
    """The page with its first inline equations replaced, in order, by ``equations`` (TeX)."""
    pattern = re.compile(r'(<span class="math notranslate nohighlight">)\\\([^<]*?\\\)(</span>)')
    assert len(pattern.findall(html)) >= len(equations), "the page has too few inline equations to plant in"
    todo = iter(equations)

    def swap(m):
        equation = next(todo, None)
        return m.group(0) if equation is None else f"{m.group(1)}\\({equation}\\){m.group(2)}"

    return pattern.sub(swap, html)


@pytest.mark.slow
def test_math_check_fails_on_broken_equations(built_book, site, browser):
    """The math check can fail. Copies of a built chapter page (next to it, in the test's build only): one with three
    equations broken (an unbalanced brace, a double exponent, an undefined macro), each of which the check reports;
    and one without its MathJax script, as the book was offline when MathJax came from a CDN: every equation raw."""
    chapter = toc_chapters()[0].stem
    html = (built_book / "chapters" / f"{chapter}.html").read_text()
    planted = built_book / "chapters" / "_planted-broken-math.html"
    planted.write_text(_planted(html, [r"\frac{1}{2", r"x^1^2", r"\plantedmacro{x}"]))
    state = _math_state(browser, f"{site}/chapters/{planted.name}")
    assert state["mathjax"] == "typeset"
    assert any(r"\(\frac{1}{2\)" in r for r in state["raw"]), state["raw"]
    assert [r"\frac{1}{2" in u for u in state["unrendered"]] == [True], state["unrendered"]
    assert len(state["errors"]) == 1 and "Double exponent" in state["errors"][0], state["errors"]
    assert len(state["undefined"]) == 1 and r"\plantedmacro" in state["undefined"][0], state["undefined"]
    assert len(_math_problems(state)) == 4

    no_mathjax = built_book / "chapters" / "_planted-no-mathjax.html"
    no_mathjax.write_text(re.sub(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*></script>', "", html))
    state = _math_state(browser, f"{site}/chapters/{no_mathjax.name}")
    assert state["mathjax"] == "not loaded" and state["rendered"] == 0
    assert state["marked"] > 0 and len(state["unrendered"]) == state["marked"], state["unrendered"][:3]
    assert len(state["raw"]) >= state["marked"] and _math_problems(state)


@pytest.mark.slow
def test_index_page_links_every_chapter(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site}/index.html")  # a redirect to the root page (intro.html): wait until it has landed
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("intro.html")
                                     and d.execute_script("return document.readyState") == "complete")
    links = browser.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")
    for chapter in toc_chapters():
        assert any(link.endswith(f"chapters/{chapter.stem}.html") for link in links), f"no link to {chapter.stem}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "index.png"))
    assert (ARTIFACTS / "index.png").stat().st_size > 10_000
