"""report.html: the table and the figures in one self-contained file that opens anywhere."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from reslab.metrics import higher_is_better


def write_report(out: Path, header: list[str], rows: list[list[str]], figures: list[Path],
                 by: list[str], metric: str, groups: list[tuple[str, list[str]]]) -> Path:
    """One HTML file with the table and the figures inlined: it opens anywhere, offline. It is
    dated and names each group's run directories (`groups`: label, run directories), so every
    row can be traced to the runs behind it."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    imgs = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"'
        f' alt="{p.stem}"><figcaption>{p.name}</figcaption></figure>' for p in figures)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>reslab compare</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}th{{background:#f3f3f3}}
img{{max-width:100%}}</style></head><body><h1>reslab compare</h1>
<p>generated {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; grouped by {html.escape(', '.join(by))};
metric {html.escape(metric)} ({'higher' if higher_is_better(metric) else 'lower'} is better);
mean ± std over n runs.</p>
<table><tr>{cells}</tr>{body}</table>{run_list(groups)}{imgs}
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path


def run_list(groups: list[tuple[str, list[str]]]) -> str:
    """Each group with its run directories (W&B run ids for runs read from W&B)."""
    if not groups:
        return ""
    items = "".join(
        f"<li>{html.escape(name)} (n={len(paths)})<ul>"
        + "".join(f"<li><code>{html.escape(p)}</code></li>" for p in paths) + "</ul></li>"
        for name, paths in groups)
    return f"<h2>runs</h2><ul>{items}</ul>"
