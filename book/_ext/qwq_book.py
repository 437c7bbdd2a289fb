"""Sphinx tweaks for the course website: MathJax served from the site itself.

(And one fix: a script that sphinx-thebe adds twice is kept once.)

Sphinx loads MathJax from a CDN by default, so on a machine without network
(or a static copy opened from disk) every formula stays raw TeX. The
`sphinx-mathjax-offline` wheel ships MathJax 3; we copy just the part a page
needs (tex-chtml.js, its fonts and the lazily loaded TeX extensions, ~4 MB
instead of 24 MB) into _static/mathjax and point Sphinx at it.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

# tex-chtml.js last: its presence marks a complete copy.
MATHJAX_PARTS = ["output/chtml", "input/tex/extensions", "ui", "a11y", "tex-chtml.js"]


def _mathjax_source() -> Path | None:
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "static" / "mathjax"
    return path if (path / "tex-chtml.js").is_file() else None


def _use_local_mathjax(app, config) -> None:
    if _mathjax_source() is None:
        logger.warning("sphinx-mathjax-offline is not installed: formulas need MathJax from the internet")
        return
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static
    # textmacros: `\text{head\_dim}` shows "head_dim" (as in JupyterLab), not "head\_dim".
    mj = dict(config.mathjax3_config or {})
    mj.setdefault("loader", {}).setdefault("load", []).append("[tex]/textmacros")
    mj.setdefault("tex", {}).setdefault("packages", {}).setdefault("[+]", []).append("textmacros")
    config.mathjax3_config = mj


def _copy_mathjax(app, exc) -> None:
    src = _mathjax_source()
    if exc is not None or src is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    stamp = dest / "tex-chtml.js"
    if stamp.is_file() and stamp.stat().st_size == (src / "tex-chtml.js").stat().st_size:
        return  # already there from an earlier build
    for part in MATHJAX_PARTS:
        s, d = src / part, dest / part
        if s.is_dir():
            shutil.copytree(s, d, dirs_exist_ok=True)
        elif s.is_file():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """sphinx-thebe registers its inline config script twice; the second copy throws
    "Identifier 'THEBE_JS_URL' has already been declared" in the browser console."""
    scripts, seen = [], set()
    for js in context.get("script_files", []):
        attributes = getattr(js, "attributes", {})  # an inline script's filename is None or ""
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            scripts.append(js)
    if "script_files" in context:
        context["script_files"] = scripts


def setup(app):
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
