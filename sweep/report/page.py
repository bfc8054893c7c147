"""A report's page: sections of prose, tables and pictures, rendered as Markdown and as HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def fmt(value) -> str:
    """A parameter's value as people write it (None: the setting left unset)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "none"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for s in sections:
        parts.append(f"## {s.title}")
        parts += s.text
        parts += [t.to_markdown(index=False, floatfmt=".4g") for t in s.tables]
        parts += [f"![{name}]({name})" for name in s.images]
    return "\n\n".join(parts) + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        body += [f"<p>{html.escape(t)}</p>" for t in s.text]
        body += [t.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}") for t in s.tables]
        body += [f'<img src="{name}" alt="{name}">' for name in s.images]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
