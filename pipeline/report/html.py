"""The report page: one self-contained HTML file (inline CSS, images as ``data:`` URIs, no links
or scripts), readable from disk without a server."""
from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.meta, .note { color: #555; } .note { font-style: italic; }
img { max-width: 100%; display: block; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class Section:
    """One ``<h2>`` section: its title, its HTML fragments, and whether it only says what to run."""

    title: str
    blocks: tuple[str, ...]
    waiting: bool = False


def anchor(title: str) -> str:
    """The section's in-page id (``Data quality per run`` -> ``data-quality-per-run``)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def image(png_base64: str, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png_base64}">'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def missing(what: str, command: str) -> str:
    """The note of a section whose input does not exist yet."""
    return f'<p class="note">no {escape(what)} yet: run <code>pipeline {escape(command)}</code></p>'


def table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table (escaped; floats with 4 decimals, missing values as -)."""
    return frame.to_html(index=False, border=0, na_rep="-", float_format=lambda x: f"{x:.4f}", escape=True)


def render(title: str, meta: str, sections: tuple[Section, ...]) -> str:
    """The whole page: a title, a line of facts, a table of contents and the sections."""
    contents = "".join(f'<li><a href="#{anchor(s.title)}">{escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(f'<section id="{anchor(s.title)}">\n<h2>{escape(s.title)}</h2>\n' + "\n".join(s.blocks)
                     + "\n</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n"
            f'<p class="meta">{escape(meta)}</p>\n<ul>{contents}</ul>\n{body}\n</body>\n</html>\n')
