"""The one figure writer (`save_fig`: PNG and PDF) and the one table writer (`save_table`: CSV, Markdown,
LaTeX) of the project; names are prefixed with the notebook number ("02_confusion"). `show` puts a saved figure
in the notebook from the PNG already written (the inline backend would render it a second time)."""
from __future__ import annotations

import io as _io
import os
import struct
import weakref
from pathlib import Path
from typing import Iterable

import matplotlib.pyplot as plt
from matplotlib.backend_bases import FigureCanvasBase
import pandas as pd

from ..io import atomic_open, atomic_write_bytes, atomic_write_text


# figure -> (PNG bytes, dpi) of its last save_fig, for `show`; a figure closed and collected leaves it
_SAVED_PNG: "weakref.WeakKeyDictionary[plt.Figure, tuple[bytes, int]]" = weakref.WeakKeyDictionary()
INLINE_DPI = 100  # the size a shown figure takes on screen: matplotlib's figure.dpi default


# the formats save_fig writes when it is not told: a notebook's session sets them from its profile's
# `figure_formats` knob (`set_figure_formats`; the quick profile's smoke run writes PNG only)
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")


def set_figure_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Set the formats `save_fig` writes by default ("png,pdf" or a sequence); PNG must be among them (`show`
    and the HTML report read it). Returns the formats set."""
    global FIGURE_FORMATS
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    supported = FigureCanvasBase.get_supported_filetypes()
    bad = [f for f in names if f not in supported]
    if bad or "png" not in names:
        raise ValueError(f"figure formats {names}: {'unknown ' + ', '.join(bad) if bad else 'png is missing'}; "
                         f"give png plus any of {', '.join(sorted(supported))}, comma-separated (e.g. 'png,pdf')")
    FIGURE_FORMATS = tuple(dict.fromkeys(names))
    return FIGURE_FORMATS


def save_fig(fig: plt.Figure, name: str, figures_dir: str | os.PathLike = "figures",
             formats: Iterable[str] | None = None, dpi: int = 150) -> list[Path]:
    """The one figure writer: `figures/<name>.png` and `.pdf` (`formats`; default `FIGURE_FORMATS`), each
    written atomically. Prefix names with the notebook number (e.g. "02_confusion"). Notebooks then `show(fig)`."""
    out = []
    for ext in (FIGURE_FORMATS if formats is None else formats):
        buf = _io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
        out.append(atomic_write_bytes(Path(figures_dir) / f"{name}.{ext}", buf.getvalue()))
        if ext == "png":
            _SAVED_PNG[fig] = (buf.getvalue(), dpi)
    return out


def _inline() -> bool:
    """True in a Jupyter kernel drawing figures inline (papermill's included)."""
    import matplotlib

    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the notebook extras
        return False
    return get_ipython() is not None and "inline" in matplotlib.get_backend()


def show(fig: plt.Figure) -> None:
    """Show a figure in the notebook and close it. A figure `save_fig` wrote is shown from the PNG it wrote, at
    INLINE_DPI's size on screen: the inline backend would draw it twice more (a tight bounding box, then the
    image), which for a 13-panel confusion grid or notebook 10's LLR charts is most of a figure's cost. Outside
    an inline kernel (a script, an interactive backend), or for a figure never saved, this is `plt.show()`."""
    saved = _SAVED_PNG.get(fig)
    if saved is None or not _inline():
        plt.show()
        return
    from IPython.display import Image, display

    png, dpi = saved
    width = struct.unpack(">I", png[16:20])[0]  # the PNG header's IHDR width
    display(Image(data=png, format="png", width=round(width * INLINE_DPI / dpi)))
    plt.close(fig)


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
