"""The course website (`make book`), opened in a real browser.

Builds the site with book/build.py (incremental: a fresh build is reused), serves
it on 127.0.0.1 and loads every page in headless Chromium (`--dump-dom`, after the
page's scripts ran, MathJax included). Then checks, against the notebooks
themselves, that:

- every notebooks/NN_*.ipynb is a page, with its title, every code cell's source
  and every output: text, and plots as <img> elements whose files are real PNGs;
- formulas were typeset by the MathJax the site ships (no CDN: no network here);
- no raw markdown leaks into the text;
- navigation works: the home page's chapter list and the sidebar reach every
  chapter in order, next/previous links chain home -> 01 -> ... -> last, and every
  internal link on every page answers 200;
- pages load nothing from the internet (scripts and stylesheets are local).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = ROOT / "book" / "build.py"
NOTEBOOKS = Path(os.environ.get("BOOK_NOTEBOOKS", ROOT / "notebooks"))
BUILD_DIR = Path(os.environ.get("BOOK_BUILD", ROOT / "book" / "_build"))
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
    "--virtual-time-budget=4000",  # let the page's scripts (MathJax) finish first
    "--enable-logging=stderr", "--v=0",  # the page's console messages, on stderr
]
CONSOLE_ERROR = re.compile(r":CONSOLE[^\]]*\] \"(Uncaught .*|Failed to load resource.*)")


def _load_build_module():
    spec = importlib.util.spec_from_file_location("book_build", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


book_build = _load_build_module()
bs4 = pytest.importorskip("bs4", reason="beautifulsoup4 (installed with nbconvert) parses the pages")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    if os.geteuid() == 0:
        pytest.fail("chromium is not installed: run `make browser` (apt-get install chromium)")
    pytest.skip("chromium is not installed and we are not root to install it: `sudo make browser`")


@pytest.fixture(scope="module")
def site() -> Path:
    if importlib.util.find_spec("jupyter_book") is None:
        pytest.skip("jupyter-book is not installed in this environment: `make book` installs it")
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--notebooks", str(NOTEBOOKS), "--build", str(BUILD_DIR)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout}\n{proc.stderr}"
    out_root = BUILD_DIR.parent if BUILD_DIR.name == "_build" else BUILD_DIR
    html = out_root / "_build" / "html"
    assert (html / "index.html").is_file(), proc.stdout + proc.stderr
    return html


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log in the test output
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def notebooks(site) -> list[Path]:
    """The chapters as the build staged them (a notebook added since is in the next build)."""
    found = book_build.chapters(BUILD_DIR / "src" / "notebooks")
    assert found, f"no NN_name.ipynb in {NOTEBOOKS}"
    return found


@pytest.fixture(scope="module")
def loaded(chromium, server, notebooks, tmp_path_factory) -> dict[str, tuple[bs4.BeautifulSoup, list[str]]]:
    """URL -> (the DOM Chromium built for it, its console errors): home and every chapter."""
    urls = site_order(server, notebooks)
    profiles = tmp_path_factory.mktemp("chromium")

    def dump(job):
        i, url = job
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profiles / str(i)}", "--dump-dom", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "<html" in proc.stdout, f"chromium failed on {url}:\n{proc.stderr[-2000:]}"
        errors = [m.group(1) for m in map(CONSOLE_ERROR.search, proc.stderr.splitlines()) if m]
        return url, (bs4.BeautifulSoup(proc.stdout, "html.parser"), errors)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(dump, enumerate(urls)))


@pytest.fixture(scope="module")
def pages(loaded) -> dict[str, bs4.BeautifulSoup]:
    return {url: dom for url, (dom, _) in loaded.items()}


# ---------------------------------------------------------------- helpers


def chapter_url(server: str, nb: Path) -> str:
    return f"{server}notebooks/{nb.stem}.html"


def site_order(server: str, notebooks: list[Path]) -> list[str]:
    """Every page in reading order: home, the chapters, then the instructor's guide."""
    return [server + "intro.html"] + [chapter_url(server, nb) for nb in notebooks] + [server + "docs/instructor.html"]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def squash(text: str) -> str:
    return " ".join(text.split())


def tags(cell: dict) -> set[str]:
    return {t.replace("_", "-") for t in cell.get("metadata", {}).get("tags", [])}


def web_cells(nb_path: Path) -> list[dict]:
    """The notebook's code cells as the site shows them (book/build.py's for_the_web)."""
    nb = book_build.for_the_web(json.loads(nb_path.read_text(encoding="utf-8")))
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "remove-cell" not in tags(c)]


def notebook_title(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:]
    raise AssertionError(f"{nb_path.name} has no '# title' line")


def output_text(out: dict) -> str:
    """The text a reader sees for one output ("" for plots and errors, checked elsewhere)."""
    def joined(text):
        text = "".join(text) if isinstance(text, list) else text
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # ANSI colours
        return "\n".join(line.split("\r")[-1] for line in text.split("\n"))  # progress bars

    data = out.get("data", {})
    if out["output_type"] == "stream":
        return joined(out["text"])
    if {"image/png", "image/svg+xml", "text/markdown", "text/latex"} & data.keys():
        return ""
    if "text/html" in data:
        return bs4.BeautifulSoup(joined(data["text/html"]), "html.parser").get_text("\n")
    return joined(data.get("text/plain", ""))


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def article(dom):
    node = dom.select_one("article.bd-article") or dom.select_one("main")
    assert node is not None, "no <article> in page"
    return node


def sidebar_targets(dom, url: str) -> list[str]:
    links = dom.select(".bd-sidebar-primary nav.bd-links a.reference.internal")
    return [urldefrag(urljoin(url, a["href"]))[0] for a in links]


def prev_next(dom, url: str) -> tuple[str | None, str | None]:
    prev, nxt = dom.select_one("a.left-prev"), dom.select_one("a.right-next")
    return tuple(urldefrag(urljoin(url, a["href"]))[0] if a else None for a in (prev, nxt))


# ---------------------------------------------------------------- tests


def test_every_chapter_renders_with_code_and_outputs(pages, server, notebooks):
    for nb in notebooks:
        url = chapter_url(server, nb)
        dom = pages[url]
        body = article(dom)

        h1 = body.find("h1")
        assert h1 is not None, f"{nb.name}: no title on the page"
        for link in h1.select("a.headerlink"):
            link.decompose()
        assert words(h1.get_text()) == words(notebook_title(nb).replace("`", "").replace("*", "")), nb.name

        cells = web_cells(nb)
        rendered = body.select("div.cell")
        assert len(rendered) == len(cells), f"{nb.name}: {len(cells)} code cells, {len(rendered)} on the page"
        for i, (cell, div) in enumerate(zip(cells, rendered)):
            where = f"{nb.name} code cell {i}"
            source = div.select_one("div.cell_input pre")
            if "remove-input" not in tags(cell):
                assert source is not None, f"{where}: no code"
                assert squash(source.get_text()) == squash(cell["source"]), f"{where}: code differs"
            outputs = [] if "remove-output" in tags(cell) else cell.get("outputs", [])
            if not outputs:
                continue
            shown = div.select_one("div.cell_output")
            assert shown is not None, f"{where}: outputs missing"
            shown_text = squash(shown.get_text())
            for out in outputs:
                first = next((line for line in output_text(out).splitlines() if line.strip()), "")
                if first:
                    assert squash(first) in shown_text, f"{where}: output {first!r} not shown"
            pngs = sum("image/png" in out.get("data", {}) for out in outputs)
            imgs = shown.find_all("img")
            assert len(imgs) == pngs, f"{where}: {pngs} plots, {len(imgs)} <img> on the page"
            for img in imgs:
                check_png(urljoin(url, img["src"]), where)


def check_png(url: str, where: str) -> None:
    from PIL import Image

    status, data = fetch(url)
    assert status == 200, f"{where}: image {url} answers {status}"
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{where}: {url} is not a PNG"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.width > 50 and im.height > 50, f"{where}: {url} is {im.size}"
        assert im.convert("L").getextrema()[0] < 200, f"{where}: {url} is blank"


def test_math_is_typeset_offline(pages, server, notebooks):
    for nb in notebooks:
        markdown = "".join(
            "".join(c["source"]) for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "markdown"
        )
        if not re.search(r"\$[^$\s][^$]*\$", markdown):
            continue
        body = article(pages[chapter_url(server, nb)])
        assert body.find("mjx-container"), f"{nb.name}: formulas were not typeset (MathJax did not load)"
        assert not body.find("mjx-merror"), f"{nb.name}: MathJax error: {body.find('mjx-merror').get_text()!r}"


def test_no_raw_markdown(pages):
    for url, dom in pages.items():
        body = article(dom)
        for node in body.select("pre, code, script, style, mjx-container, div.cell"):
            node.decompose()
        text = body.get_text("\n")
        for pattern, what in [(r"```", "code fence"), (r"(?m)^\s*#{1,6} \w", "heading"),
                              (r"\*\*\w[^*\n]*\*\*", "bold"), (r"\]\((?:https?://|\.{0,2}/|\w+\.)", "link"),
                              (r"\$\$", "display math")]:
            match = re.search(pattern, text)
            assert match is None, f"{url}: raw markdown {what}: {text[max(0, match.start() - 40):match.end() + 40]!r}"


def test_home_page_and_sidebar_reach_every_chapter_in_order(pages, server, notebooks):
    home, *chapters = site_order(server, notebooks)    # chapters here: every page after home
    status, index = fetch(server + "index.html")
    assert status == 200 and b"intro.html" in index, "index.html does not lead to the home page"

    dom = pages[home]
    toc = [urljoin(home, a["href"]) for a in article(dom).select(".toctree-wrapper a.reference.internal")]
    assert [urldefrag(u)[0] for u in toc] == chapters, "the home page's chapter list, then the guide"
    for url, page in pages.items():
        assert sidebar_targets(page, url) == [home] + chapters, f"sidebar of {url}"
    for url in chapters:
        active = pages[url].select_one(".bd-sidebar-primary li.current > a, .bd-sidebar-primary li.active > a")
        assert active is not None and urljoin(url, active["href"]).startswith(url), f"{url}: sidebar marks no current page"


def test_next_and_previous_links_chain_the_chapters(pages, server, notebooks):
    order = site_order(server, notebooks)
    for i, url in enumerate(order):
        prev, nxt = prev_next(pages[url], url)
        assert prev == (order[i - 1] if i > 0 else None), f"{url}: previous link {prev}"
        assert nxt == (order[i + 1] if i + 1 < len(order) else None), f"{url}: next link {nxt}"


def test_every_internal_link_resolves(pages, server):
    targets = set()
    for url, dom in pages.items():
        for a in dom.select("a[href]"):
            target = urldefrag(urljoin(url, a["href"]))[0]
            if target.startswith(server):
                targets.add(target)
    broken = [(t, s) for t in sorted(targets) if (s := fetch(t)[0]) != 200]
    assert not broken, f"broken links: {broken}"


def test_pages_load_nothing_from_the_internet(pages):
    for url, dom in pages.items():
        external = [
            tag.get("src") or tag.get("href")
            for tag in dom.select("script[src], link[rel~=stylesheet][href], img[src], iframe[src]")
            if urlparse(tag.get("src") or tag.get("href")).netloc not in ("", urlparse(url).netloc)
        ]
        assert not external, f"{url} loads {external}"


def test_pages_run_without_javascript_errors(loaded):
    for url, (_, errors) in loaded.items():
        assert not errors, f"{url}: browser console: {errors}"
