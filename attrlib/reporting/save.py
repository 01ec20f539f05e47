"""The one figure writer (`save_fig`: PNG and PDF) and the one table writer (`save_table`: CSV, Markdown,
LaTeX) of the project; names are prefixed with the notebook number ("02_confusion")."""
from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
import pandas as pd

from ..io import atomic_open, atomic_write_bytes, atomic_write_text


def save_fig(fig: plt.Figure, name: str, figures_dir: str | os.PathLike = "figures",
             formats: Iterable[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """The one figure writer: `figures/<name>.png` and `.pdf`, each written atomically. Prefix names with
    the notebook number (e.g. "02_confusion")."""
    out = []
    for ext in formats:
        buf = _io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
        out.append(atomic_write_bytes(Path(figures_dir) / f"{name}.{ext}", buf.getvalue()))
    return out


def save_table(table: pd.DataFrame, name: str, results_dir: str | os.PathLike = "results",
               caption: str | None = None) -> list[Path]:
    """`results/<name>.csv`, `.md` and `.tex` (booktabs), each written atomically. caption (default: the
    table's `attrs["caption"]`, if any) goes under the Markdown table and into the LaTeX table."""
    d = Path(results_dir)
    caption = table.attrs.get("caption") if caption is None else caption
    with atomic_open(d / f"{name}.csv", "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh)
    md = atomic_write_text(d / f"{name}.md", table.to_markdown() + (f"\n\n{caption}" if caption else "") + "\n")
    latex = table.to_latex(escape=True, caption=caption or None, label=f"tab:{name}" if caption else None)
    tex = atomic_write_text(d / f"{name}.tex", latex + "\n")
    return [d / f"{name}.csv", md, tex]
