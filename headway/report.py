"""The demo's one-page HTML report: tables and pictures, self-contained (images inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def inline_image(path: Path, width: int = 520) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" width="{width}" alt="{html.escape(Path(path).stem)}">'


def inline_video(path: Path, width: int = 520) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<video controls loop muted width="{width}" src="data:video/mp4;base64,{data}"></video>'


def html_table(rows: dict[str, dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = []
    for name, values in rows.items():
        cells = "".join(
            f"<td>{values[c]:.3f}</td>" if isinstance(values.get(c), float) else f"<td>{html.escape(str(values.get(c, '')))}</td>"
            for c in columns
        )
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(path: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """Write `sections` (heading, HTML body) as one page at `path`."""
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child{text-align:left}img{margin:4px;border:1px solid #eee}"
    )
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(parts))
    temporary.replace(path)
    return path
