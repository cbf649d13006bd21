"""Renderers of a ``Report``: HTML, JSON, CSV, Markdown. ``write_report`` picks by suffix.

Each renderer is a pure function ``Report -> str``; files are written atomically.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from xnorlab.common.atomic import atomic_write_text
from xnorlab.common.errors import XnorlabError
from xnorlab.report.model import Report

# suffix -> (module, function). A renderer is imported when first used: the HTML one loads
# matplotlib for its plots, which the other formats and the app's start need not pay for.
RENDERERS: dict[str, tuple[str, str]] = {
    ".html": ("xnorlab.report.render.html", "render_html"),
    ".htm": ("xnorlab.report.render.html", "render_html"),
    ".json": ("xnorlab.report.render.json_render", "render_json"),
    ".csv": ("xnorlab.report.render.csv_render", "render_csv"),
    ".md": ("xnorlab.report.render.markdown", "render_markdown"),
    ".markdown": ("xnorlab.report.render.markdown", "render_markdown"),
}


def render(report: Report, fmt: str) -> str:
    """Render ``report`` as ``fmt`` ("html", "json", "csv", "md" or a suffix like ".md")."""
    suffix = fmt.lower() if fmt.startswith(".") else f".{fmt.lower()}"
    if suffix not in RENDERERS:
        known = ", ".join(sorted(RENDERERS))
        raise XnorlabError(f"unknown report format {fmt!r} (use one of: {known})")
    module_name, function = RENDERERS[suffix]
    text: str = getattr(importlib.import_module(module_name), function)(report)
    return text


def write_report(report: Report, path: str | Path) -> Path:
    """Render ``report`` in the format of ``path``'s suffix and write it atomically."""
    target = Path(path)
    if target.suffix.lower() not in RENDERERS:
        known = ", ".join(sorted(RENDERERS))
        raise XnorlabError(f"cannot tell the report format of {target.name!r} (use {known})")
    atomic_write_text(target, render(report, target.suffix))
    return target
