"""One static HTML report of an executed study, for the write-up (`attrlib report`, `make report`).

    build_report()   # runs/notebooks/*.ipynb, figures/, results/ -> report/index.html

The report folder stands alone (copy it, zip it, open index.html): one page per executed notebook
(nbconvert's HTMLExporter, code cells hidden unless `show_input`, figures embedded in the page), a copy of
every figure (PNG, PDF) and table (CSV, Markdown, LaTeX, and an HTML rendering of the CSV), and an index
that links all of them and states the study's profile, data, commit and time (from the runner's
`study_timing.json`). Every file is written atomically; the report's own subfolders are rebuilt each time,
so nothing from an earlier study stays behind.

It reads on one screen per page and without a network: a table page shows a narrow headline and the whole
table collapsed below it (`attrlib.reporting.html.table_html`, as the notebooks' own outputs), and no page
loads anything from elsewhere: the pages extend nbconvert's lab template without the scripts it takes from a
CDN (require.js, MathJax, mermaid, the widget manager: the notebooks have no LaTeX, no diagrams and no live
widgets in a static page); `remote_references` finds anything a page would still fetch.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import time
from itertools import groupby
from pathlib import Path

import jinja2
import nbformat
import pandas as pd
from nbconvert import HTMLExporter

from ..errors import ConfigError
from ..io import atomic_write_bytes, atomic_write_text
from ..reporting.html import TABLE_CSS, table_html
from .runner import notebooks_in
from .session import project_path, shown_path

FIGURE_EXTENSIONS = (".png", ".pdf", ".svg")
TABLE_EXTENSIONS = (".csv", ".md", ".tex")
TIMING_FILE = "study_timing.json"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table.facts td { padding: .15em 1em .15em 0; vertical-align: top; } table.facts td:first-child { color: #666; }
ol.notebooks li { margin: .3em 0; } .muted { color: #777; font-size: .9em; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
.figures figure { margin: 0; border: 1px solid #ddd; padding: 6px; background: #fff; }
.figures img { width: 100%; height: 140px; object-fit: contain; }
.figures figcaption { font-size: .8em; word-break: break-all; }
ul.tables { columns: 2; } code { background: #f4f4f4; padding: 0 .2em; }
""" + TABLE_CSS

# nbconvert's lab template without what it loads from a CDN
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
# what a page would fetch from elsewhere: a tag's src/href (script, style sheet, image, frame, media), a CSS
# url() or @import, a JavaScript import of an http(s):// or protocol-relative address (links to follow are not
# fetched, nor are addresses in comments)
_REMOTE = re.compile(r"<(?:script|link|img|iframe|source|embed|object)\b[^>]*\b(?:src|href|data)\s*=\s*[\"']?"
                     r"(?:https?:)?//[^>]*>|url\(\s*[\"']?(?:https?:)?//[^)]*\)|@import\s+[\"'](?:https?:)?//[^\"']*"
                     r"|\bimport\s*\(\s*[\"'](?:https?:)?//[^\"']*|\bfrom\s+[\"'](?:https?:)?//[^\"']*", re.IGNORECASE)
# a notebook page: its tables as the report's (the notebooks' DataFrames already carry it; older pandas HTML too)
_PAGE_STYLE = TABLE_CSS + """
.jp-RenderedHTMLCommon table.dataframe td, .jp-RenderedHTMLCommon table.dataframe th { padding: .3em .9em;
  text-align: right; white-space: nowrap; }
.jp-OutputArea-output { overflow-x: auto; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
"""


def build_report(executed: str | Path = "runs/notebooks", figures: str | Path = "figures",
                 results: str | Path = "results", out: str | Path = "report", show_input: bool = False) -> Path:
    """Build the report of the study whose executed notebooks are in `executed`; return its index.html."""
    # relative folders are the project root's, as the study's (`attrlib.study.session.project_path`)
    executed, figures, results, out = (project_path(p) for p in (executed, figures, results, out))
    if not executed.is_dir():
        raise ConfigError(f"no executed notebooks: {str(executed)!r} does not exist; run `attrlib study` (or "
                          "`make study`) first, or pass --executed DIR")
    notebooks = notebooks_in(executed)
    timing_path = executed / TIMING_FILE
    timing = json.loads(timing_path.read_text(encoding="utf-8")) if timing_path.is_file() else {}
    for sub in ("notebooks", "figures", "results"):  # only the report's own folders are rebuilt
        shutil.rmtree(out / sub, ignore_errors=True)

    exporter = HTMLExporter(template_name="lab", template_file="offline.html.j2",
                            extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})],
                            exclude_input=not show_input, exclude_input_prompt=not show_input,
                            exclude_output_prompt=True, embed_images=True)
    pages = []
    for nb_path in notebooks:
        nb = nbformat.read(str(nb_path), as_version=4)
        nb.metadata.pop("widgets", None)  # a widget's saved state needs the widget manager from a CDN
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": nb_path.stem}})
        page = out / "notebooks" / f"{nb_path.stem}.html"
        atomic_write_text(page, _with_back_link(_styled(body)))
        pages.append(dict(page=page.relative_to(out).as_posix(), name=nb_path.name, title=_title(nb, nb_path.stem),
                          errors=_errors(nb), seconds=timing.get("notebooks", {}).get(nb_path.name)))

    figure_files = _copy(figures, out / "figures", FIGURE_EXTENSIONS)
    table_files = _copy(results, out / "results", TABLE_EXTENSIONS)
    # where the numbers come from (attrlib.provenance): the study's record, linked from the index's facts
    provenance = _copy(results, out / "results", (".json",))
    for csv in [f for f in table_files if f.suffix == ".csv"]:
        frame = pd.read_csv(csv, index_col=0)  # save_table writes the row labels first
        caption = _caption(csv.with_suffix(".md"))
        atomic_write_text(csv.with_suffix(".html"), _page(csv.stem, f"<h1>{html.escape(csv.stem)}</h1>"
                          f"<p><a href='../index.html'>report index</a> · <a href='{html.escape(csv.name)}'>CSV</a>"
                          f"</p>{table_html(frame, css=False)}"
                          + (f"<p class='muted'>{html.escape(caption)}</p>" if caption else "")))

    index = out / "index.html"
    atomic_write_text(index, _index(timing, pages, figure_files, table_files, out, show_input, provenance))
    return index


def _styled(page: str) -> str:
    """An exported page with the report's table style in its head."""
    return page.replace("</head>", f"<style>{_PAGE_STYLE}</style>\n</head>", 1)


def remote_references(page: str) -> list[str]:
    """What `page` would fetch from http(s):// when opened (`_REMOTE`): [] for a page that stands alone."""
    return [m.group(0) for m in _REMOTE.finditer(page)]


def _caption(markdown: Path) -> str:
    """The caption save_table wrote under a Markdown table (its last paragraph not part of the table)."""
    if not markdown.is_file():
        return ""
    last = markdown.read_text(encoding="utf-8").strip().split("\n\n")[-1]
    return "" if last.lstrip().startswith("|") else last.strip()


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The notebook's first markdown heading ("# 02 · Baseline ..."), without the '#'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def _errors(nb: nbformat.NotebookNode) -> int:
    return sum(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _with_back_link(body: str) -> str:
    """The exported page with a link back to the index at the top of its body."""
    start = body.find("<body")
    end = body.find(">", start) + 1 if start >= 0 else 0
    link = ("<p style='margin:1em 2em'><a href='../index.html'>&larr; report index</a></p>")
    return body[:end] + link + body[end:]


def _copy(source: Path, target: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Copy the files of `source` with those extensions into `target` (atomically, one by one): the copies."""
    if not source.is_dir():
        return []
    copies = []
    for path in sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in extensions):
        copies.append(atomic_write_bytes(target / path.name, path.read_bytes()))
    return copies


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _index(timing: dict, pages: list[dict], figures: list[Path], tables: list[Path], out: Path,
           show_input: bool, records: list[Path] = ()) -> str:
    e = html.escape
    minutes = f"{timing['seconds'] / 60:.1f} min" if "seconds" in timing else "unknown"
    data = shown_path(timing["data"]) if timing.get("data") else "unknown"  # the root's data/...: no machine path
    facts = [("profile", timing.get("profile", "unknown")), ("data", data),
             ("held out", timing.get("heldout", "unknown")), ("device", timing.get("device", "unknown")),
             ("commit", timing.get("commit") or "unknown (not a git checkout, or before the commit was recorded)"),
             ("started", timing.get("started", "unknown")), ("finished", timing.get("finished", "unknown")),
             ("wall time", f"{minutes} ({timing.get('jobs', '?')} notebook(s) at a time, "
                           f"{timing.get('threads', '?')} torch thread(s) each)"),
             ("runs", f"{timing.get('runs_trained', '?')} trained, {timing.get('runs_reused_or_before', '?')} "
                      f"found finished")]
    parts = ["<h1>attrlib study report</h1>",
             f"<p class='muted'>built {e(time.strftime('%Y-%m-%d %H:%M:%S %z'))} by <code>attrlib report</code> "
             f"from the executed notebooks; code cells {'shown' if show_input else 'hidden'}</p>",
             "<table class='facts'>" + "".join(f"<tr><td>{e(k)}</td><td><code>{e(str(v))}</code></td></tr>"
                                               for k, v in facts)
             + "".join(f"<tr><td>provenance</td><td><a href='{e(r.relative_to(out).as_posix())}'>{e(r.name)}</a> "
                       "(commit, profile, data, seeds, rotations, parameters of each study)</td></tr>" for r in records)
             + "</table>",
             f"<h2>Notebooks ({len(pages)})</h2><ol class='notebooks'>"]
    for p in pages:
        extra = [f"{p['seconds']:.0f} s" if p["seconds"] is not None else "",
                 f"<strong>{p['errors']} error(s)</strong>" if p["errors"] else ""]
        parts.append(f"<li><a href='{e(p['page'])}'>{e(p['title'])}</a> <span class='muted'>{e(p['name'])} "
                     f"{' · '.join(x for x in extra if x)}</span></li>")
    parts.append("</ol>")

    shown = [f for f in figures if f.suffix == ".png"] or [f for f in figures if f.suffix != ".pdf"]
    parts.append(f"<h2>Figures ({len(shown)})</h2>")
    for prefix, group in groupby(shown, key=lambda f: f.name[:2]):
        parts.append(f"<h3>Notebook {e(prefix)}</h3><div class='figures'>")
        for fig in group:
            others = [f for f in figures if f.stem == fig.stem and f != fig]
            links = " ".join(f"<a href='{e(o.relative_to(out).as_posix())}'>{e(o.suffix[1:].upper())}</a>"
                             for o in others)
            src = e(fig.relative_to(out).as_posix())
            parts.append(f"<figure><a href='{src}'><img src='{src}' alt='{e(fig.stem)}' loading='lazy'></a>"
                         f"<figcaption><a href='{src}'>{e(fig.stem)}</a> {links}</figcaption></figure>")
        parts.append("</div>")

    stems = sorted({t.stem for t in tables})
    parts.append(f"<h2>Tables ({len(stems)})</h2>")
    for prefix, group in groupby(stems, key=lambda s: s[:2]):
        parts.append(f"<h3>Notebook {e(prefix)}</h3><ul class='tables'>")
        for stem in group:
            files = sorted((t for t in tables if t.stem == stem), key=lambda t: TABLE_EXTENSIONS.index(t.suffix))
            html_page = out / "results" / f"{stem}.html"
            name = (f"<a href='{e(html_page.relative_to(out).as_posix())}'>{e(stem)}</a>" if html_page.is_file()
                    else e(stem))
            links = " ".join(f"<a href='{e(t.relative_to(out).as_posix())}'>{e(t.suffix[1:])}</a>" for t in files)
            parts.append(f"<li>{name} <span class='muted'>{links}</span></li>")
        parts.append("</ul>")
    return _page("attrlib study report", "\n".join(parts))
