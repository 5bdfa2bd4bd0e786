"""The HTML pieces of ``report.html``: one self-contained page, no script, no network.

Every table carries ``data-source`` (the CSV or JSON it shows) and ``data-rows`` (the
rows it shows), every image ``data-source`` (the file it embeds, as base64), so a test or
a reader can check the page against the run directory it came from.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

__all__ = ["esc", "prose", "table", "kv_table", "figure", "details", "page", "MIME"]

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:32px 0 8px;
border-bottom:1px solid #e2e4e8;padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
.question{font-size:16px;color:#3a3f47;margin:4px 0 16px}
.meta{color:#6b7280;font-size:13px}
ul.findings li{margin:4px 0}
code{background:#f0f1f4;padding:1px 4px;border-radius:3px;font-size:13px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #e2e4e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#6b7280;font-size:12px;margin:0 0 12px}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}
figure img{max-width:520px;border:1px solid #e2e4e8}
figcaption{font-size:12px;color:#6b7280}
details{margin:6px 0}pre{background:#f6f7f9;padding:8px;overflow:auto;font-size:12px;
max-height:420px}
section.child{border-left:3px solid #c7d2fe;padding-left:16px;margin-top:24px}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def prose(text: str) -> str:
    """Escape ``text`` and turn its `backticked` words into ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def _cell(value) -> tuple[str, bool]:
    """Display text of one cell, and whether it is a number."""
    if isinstance(value, bool) or value is None:
        return ("" if value is None else str(value)), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        if math.isnan(value):
            return "", True
        return f"{value:.4g}", True
    return str(value), False


def table(
    frame: pd.DataFrame,
    *,
    source: str,
    caption: str | None = None,
    max_rows: int | None = None,
) -> str:
    """``frame`` as an HTML table (its first ``max_rows`` rows; a note says how many more)."""
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for record in shown.itertuples(index=False):
        cells = []
        for value in record:
            text, numeric = _cell(value.item() if hasattr(value, "item") else value)
            cells.append(
                f'<td class="num">{esc(text)}</td>' if numeric else f"<td>{esc(text)}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out = [f"<h3>{prose(caption)}</h3>" if caption else ""]
    out.append(
        f'<table data-source="{esc(source)}" data-rows="{len(shown)}" '
        f'data-total="{len(frame)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    if len(shown) < len(frame):
        out.append(
            f'<p class="note">first {len(shown)} of {len(frame)} rows; '
            f"the whole table is <code>{esc(source)}</code></p>"
        )
    return "".join(out)


def kv_table(items: dict, *, source: str) -> str:
    """A two-column table of ``key -> value`` (values shown as text)."""
    frame = pd.DataFrame({"": list(items), "value": [_text(v) for v in items.values()]})
    return table(frame, source=source)


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def figure(path: Path, name: str) -> str:
    """``path`` inlined as a base64 data URI, captioned with ``name``."""
    mime = MIME[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{esc(name)}" data-source="{esc(name)}" '
        f'src="data:{mime};base64,{data}"><figcaption>{esc(name)}</figcaption></figure>'
    )


def details(summary: str, text: str) -> str:
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
